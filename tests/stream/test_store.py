import pytest

from state.store import MemoryHistoryStore, RocksHistoryStore


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
