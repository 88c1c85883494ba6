"""The faust engine's Table of histories: faust's store interface over the project's
RocksDB store (rocksdict, explicit bytes, never pickle), so the state folder holds the same
records whichever engine wrote it, and a Table that is given that store."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import faust
from faust.stores.base import SerializedStore

from ops.metrics import WorkerMetrics
from state.store import HistoryStore
from stream.ingest import changelog
from stream.ingest.changelog import changelog_key


class HistoryTableStore(SerializedStore):
    """faust's store interface over a HistoryStore: keys are changelog keys (8-byte user ids),
    values history records. The changelog position of each partition is the store's meta
    entry `changelog/P`, the one the default engine keeps, written with the histories."""

    def __init__(self, url: Any, app: faust.App, table: faust.Table, *, history_store: HistoryStore,
                 metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.history_store = history_store
        self.metrics = metrics
        self._positions: dict[int, int] = {}  # changelog offsets acknowledged, not yet stored

    # -- what the worker uses ----------------------------------------------------------------

    def write(self, histories: dict[int, bytes], positions: dict[int, int] | None = None) -> None:
        """Store a batch's histories with the changelog positions of their records
        (`positions`: partition -> offset) and any acknowledged through faust since."""
        merged, self._positions = self._positions, {}
        for p, o in (positions or {}).items():
            merged[p] = max(o, merged.get(p, -1))
        self.history_store.apply(histories, {changelog.position_name(p): o for p, o in merged.items()})

    # -- faust's recovery and standby replicas ---------------------------------------------

    def persisted_offset(self, tp) -> int | None:
        return self.history_store.get_meta(changelog.position_name(tp.partition))

    def set_persisted_offset(self, tp, offset: int) -> None:
        # Called as changelog records are acknowledged: kept until the histories they carry
        # are stored (`write`), so the position never runs ahead of the state.
        self._positions[tp.partition] = max(offset, self._positions.get(tp.partition, -1))

    def apply_changelog_batch(self, batch: Iterable, to_key: Any, to_value: Any) -> None:
        by_partition: dict[int, list] = {}
        for event in batch:
            m = event.message
            by_partition.setdefault(m.partition, []).append((m.key, m.value, m.offset))
        for partition, records in by_partition.items():
            self.metrics.restored.inc(changelog.merge(self.history_store, partition, records))

    async def on_stop(self) -> None:
        if self._positions:
            self.write({})

    # -- the mapping faust's Table reads through (not the worker's hot path) -------------

    def _get(self, key: bytes) -> bytes | None:
        return self.history_store.get(int.from_bytes(key, "big")) if len(key) == 8 else None

    def _set(self, key: bytes, value: bytes | None) -> None:
        if value is not None:
            self.history_store.apply({int.from_bytes(key, "big"): value})

    def _del(self, key: bytes) -> None:
        pass  # histories are never deleted: a tombstone on the changelog is skipped, as by the default engine

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for user, value in self.history_store.items():
            yield changelog_key(user), value

    def _iterkeys(self) -> Iterator[bytes]:
        return (k for k, _ in self._iteritems())

    def _itervalues(self) -> Iterator[bytes]:
        return (v for _, v in self._iteritems())

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _clear(self) -> None:
        pass  # a faust-initiated reset would wipe state other engines share: never

    def reset_state(self) -> None:
        pass  # likewise: stale histories are harmless, the changelog merge keeps the newer

    def backup_partition(self, tp, flush: bool = True, purge: bool = False, keep: int = 1) -> None:
        raise NotImplementedError("back up the state folder with RocksDB's own tools")

    def restore_backup(self, tp, latest: bool = True, backup_id: int = 0) -> None:
        raise NotImplementedError("back up the state folder with RocksDB's own tools")


class HistoryTable(faust.Table):
    """A faust Table whose store is given, not named by URL."""

    def __init__(self, *args: Any, store_factory: Any, **kwargs: Any) -> None:
        self._store_factory = store_factory
        super().__init__(*args, **kwargs)

    def _new_store(self):
        return self._store_factory(self)
