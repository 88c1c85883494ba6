"""Per-user history stores: RocksDB (rocksdict) for real, a dict for unit tests.

Both keep explicit bytes (never pickles): a user key is b"u" + the user's 64-bit id
(big-endian), its value a stream.contract.history record; a meta key is b"m" + a name and holds
an int64 (the worker keeps per-partition input and changelog positions there). `apply`
writes histories and meta in one atomic WriteBatch, so a crash leaves either all of a
commit or none of it. One process owns a RocksDB directory at a time.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import rocksdict

_U = b"u"
_M = b"m"
_I64 = struct.Struct("<q")


def user_key(user: int) -> bytes:
    return _U + user.to_bytes(8, "big")


class HistoryStore(Protocol):
    def get_many(self, users: list[int]) -> list[bytes | None]: ...
    def apply(self, histories: Mapping[int, bytes], meta: Mapping[str, int] = {}) -> None: ...
    def get_meta(self, name: str) -> int | None: ...
    def items(self) -> Iterator[tuple[int, bytes]]: ...
    def close(self) -> None: ...


DEFAULT_MEMORY_BUDGET = 64 << 20


@dataclass(frozen=True)
class StoreOptions:
    """RocksDB tuning. Histories are small, write-heavy and read by point lookups.

    Memory follows one budget, not the number of users: the block cache is the budget, and
    what RocksDB would otherwise hold outside it and grow with the data is charged to it:
    index and filter blocks (partitioned, so only their small top levels stay pinned) and
    the memtables (a WriteBufferManager reserves their arena in the cache). Outside the
    budget stays only what is small and fixed: table readers of at most `max_open_files`
    files, compaction buffers, allocator slack.
    """

    compression: str = "zstd"
    block_size: int = 16 * 1024
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    max_open_files: int = 256
    bloom_bits_per_key: int = 10  # every new user is a lookup that misses: filters save a disk read
    # Writes stall (memory does not grow) while this many memtables wait for a flush.
    max_write_buffer_number: int = 2

    def __post_init__(self) -> None:
        if self.memory_budget_bytes < 4 << 20:
            raise ValueError(f"memory_budget_bytes={self.memory_budget_bytes}: give RocksDB at least 4 MiB")

    @property
    def block_cache_bytes(self) -> int:
        return self.memory_budget_bytes

    @property
    def memtable_bytes(self) -> int:
        """All memtables together: half the budget, reserved inside the block cache."""
        return self.memory_budget_bytes // 2

    @property
    def write_buffer_bytes(self) -> int:
        """One memtable; `max_write_buffer_number` of them fill `memtable_bytes`."""
        return self.memtable_bytes // self.max_write_buffer_number

    def to_options(self) -> rocksdict.Options:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        compression = getattr(rocksdict.DBCompressionType, self.compression)()
        opts.set_compression_type(compression)
        opts.set_bottommost_compression_type(compression)
        cache = rocksdict.Cache(self.block_cache_bytes)
        opts.set_write_buffer_size(self.write_buffer_bytes)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_write_buffer_manager(
            rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(self.memtable_bytes, False, cache))
        # Each open table file keeps a reader (and its pinned top-level index) outside the cache.
        opts.set_max_open_files(self.max_open_files)
        table = rocksdict.BlockBasedOptions()
        table.set_block_size(self.block_size)
        table.set_block_cache(cache)
        table.set_bloom_filter(self.bloom_bits_per_key, False)
        # Index and filter blocks live in (and are evicted from) the cache instead of growing
        # with every table file; partitioned, a lookup loads only the partition it needs.
        table.set_cache_index_and_filter_blocks(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        opts.set_block_based_table_factory(table)
        return opts


class RocksHistoryStore:
    def __init__(self, path: str | Path, options: StoreOptions = StoreOptions(), read_only: bool = False) -> None:
        """Open (and create) the store at `path`. `read_only` opens an existing store beside
        its writer and changes nothing; a folder that holds no RocksDB store raises
        FileNotFoundError before anything is written there."""
        self.path = Path(path)
        if read_only:
            if not (self.path / "CURRENT").is_file():
                raise FileNotFoundError(f"{str(self.path)!r} holds no RocksDB store (no CURRENT file)")
            self._db = rocksdict.Rdict(str(self.path), options.to_options(),
                                       access_type=rocksdict.AccessType.read_only())
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = rocksdict.Rdict(str(self.path), options.to_options())

    def get_many(self, users: list[int]) -> list[bytes | None]:
        return self._db[[user_key(u) for u in users]] if users else []

    def get(self, user: int) -> bytes | None:
        return self._db.get(user_key(user))

    def apply(self, histories: Mapping[int, bytes], meta: Mapping[str, int] = {}) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for user, value in histories.items():
            batch.put(user_key(user), value)
        for name, number in meta.items():
            batch.put(_M + name.encode(), _I64.pack(number))
        self._db.write(batch)

    def get_meta(self, name: str) -> int | None:
        raw = self._db.get(_M + name.encode())
        return None if raw is None else _I64.unpack(raw)[0]

    def items(self) -> Iterator[tuple[int, bytes]]:
        for key, value in self._db.items(from_key=_U):
            if not key.startswith(_U):
                break
            yield int.from_bytes(key[1:], "big"), value

    def approximate_users(self) -> int:
        return self._db.property_int_value("rocksdb.estimate-num-keys") or 0

    def memory_usage(self) -> dict[str, int]:
        """RocksDB's own accounting in bytes. `block_cache` includes the index, filter and
        memtable reservations charged to it; `table_readers` is what stays outside."""
        names = {"block_cache": "rocksdb.block-cache-usage", "memtables": "rocksdb.cur-size-all-mem-tables",
                 "table_readers": "rocksdb.estimate-table-readers-mem"}
        return {k: self._db.property_int_value(v) or 0 for k, v in names.items()}

    def flush(self) -> None:
        self._db.flush()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RocksHistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryHistoryStore:
    """The same interface over dicts, for unit tests."""

    def __init__(self) -> None:
        self.histories: dict[int, bytes] = {}
        self.meta: dict[str, int] = {}

    def get_many(self, users: list[int]) -> list[bytes | None]:
        return [self.histories.get(u) for u in users]

    def get(self, user: int) -> bytes | None:
        return self.histories.get(user)

    def apply(self, histories: Mapping[int, bytes], meta: Mapping[str, int] = {}) -> None:
        self.histories.update(histories)
        self.meta.update(meta)

    def get_meta(self, name: str) -> int | None:
        return self.meta.get(name)

    def items(self) -> Iterator[tuple[int, bytes]]:
        yield from sorted(self.histories.items())

    def approximate_users(self) -> int:
        return len(self.histories)

    def close(self) -> None:
        pass
