import pytest

from state.store import MemoryHistoryStore, RocksHistoryStore, StoreOptions


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path):
    s = MemoryHistoryStore() if request.param == "memory" else RocksHistoryStore(tmp_path / "db")
    yield s
    s.close()


def test_apply_get_meta_and_items(store):
    store.apply({3: b"c", 1: b"a"}, {"changelog/0": 17})
    store.apply({2: b"b", 3: b"C"})
    assert store.get_many([1, 2, 3, 4]) == [b"a", b"b", b"C", None]
    assert store.get_meta("changelog/0") == 17 and store.get_meta("changelog/1") is None
    assert list(store.items()) == [(1, b"a"), (2, b"b"), (3, b"C")]


def test_rocksdb_survives_reopen(tmp_path):
    with RocksHistoryStore(tmp_path / "db") as s:
        s.apply({2**63 - 1: b"x" * 100}, {"m": -1})
    with RocksHistoryStore(tmp_path / "db") as s:
        assert s.get_many([2**63 - 1]) == [b"x" * 100] and s.get_meta("m") == -1


@pytest.mark.parametrize("budget_mb", [4, 8, 64, 1024])
def test_options_from_a_budget_stay_within_it(budget_mb):
    o = StoreOptions(memory_budget_bytes=budget_mb << 20)
    # Memtables are charged to the block cache, which is the budget: together they fit it.
    assert o.block_cache_bytes == o.memory_budget_bytes
    assert o.write_buffer_bytes * o.max_write_buffer_number <= o.memtable_bytes < o.memory_budget_bytes
    assert o.write_buffer_bytes >= 1 << 20
    o.to_options()  # every setting is accepted by this rocksdict


def test_a_budget_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="at least 4 MiB"):
        StoreOptions(memory_budget_bytes=1 << 20)


def test_a_small_budget_store_works_and_keeps_index_and_filters_in_its_cache(tmp_path):
    options = StoreOptions(memory_budget_bytes=4 << 20)
    with RocksHistoryStore(tmp_path / "db", options) as s:
        for chunk in range(10):  # ~10 MB of histories: more than the budget, several table files
            s.apply({u: u.to_bytes(8, "big") * 12 for u in range(chunk * 10_000 + 1, (chunk + 1) * 10_000 + 1)})
        s.flush()
        assert s.get_many([1, 100_000, 100_001]) == [(1).to_bytes(8, "big") * 12,
                                                     (100_000).to_bytes(8, "big") * 12, None]
        used = s.memory_usage()
        assert used["block_cache"] <= options.block_cache_bytes * 1.1  # LRU capacity is not strict
        assert used["memtables"] <= options.memtable_bytes
        assert used["table_readers"] < 64 << 10  # index and filters are in the cache, not the readers
    with RocksHistoryStore(tmp_path / "db", StoreOptions(memory_budget_bytes=8 << 20)) as s:  # a new budget
        assert s.get_many([50_000]) == [(50_000).to_bytes(8, "big") * 12]
