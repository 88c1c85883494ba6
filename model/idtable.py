"""Bounded, collision-free id -> row maps for a never-ending stream (as Monolith does).

Ids are positive 64-bit ints (0 is padding and always maps to row 0). An id gets a row the
first time it is seen; when the table is full, the least recently used rows are recycled
and reported to the caller, which must re-initialise their embedding and optimizer state.

Everything is vectorised numpy: a lookup is one `searchsorted` over the sorted keys, not a
Python dict per id. A table of 670k rows inserts and evicts in a few milliseconds.
"""
from __future__ import annotations

import numpy as np
import torch

PAD = 0
KINDS = ("users", "items", "words")  # the id tables a learner keeps, in a fixed order


class TableFull(ValueError):
    """One batch holds more distinct new ids than the table has rows to recycle."""


class IdTable:
    """Maps ids to rows 1..capacity-1 (row 0 is padding), recycling the least recently used."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2 (row 0 is padding), got {capacity}")
        self.capacity = capacity
        self.row_key = np.zeros(capacity, dtype=np.int64)  # id held by each row, 0 = free
        self.last_used = np.zeros(capacity, dtype=np.int64)  # clock of the last lookup that hit the row
        self.clock = 0
        self.evictions = 0  # rows recycled for new ids by this process (a metric, not state)
        self.n_used = 0  # rows 1..n_used are taken: rows are handed out in order, then recycled
        self._keys = np.zeros(0, dtype=np.int64)  # sorted ids ...
        self._rows = np.zeros(0, dtype=np.int64)  # ... and their rows

    def __len__(self) -> int:
        return self.n_used

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Rows of `ids` (any shape); 0 for padding and for ids the table does not hold."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._keys) == 0:
            return np.zeros(ids.shape, dtype=np.int64)
        pos = np.searchsorted(self._keys, ids).clip(max=len(self._keys) - 1)
        hit = self._keys[pos] == ids
        return np.where(hit, self._rows[pos], 0)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `ids`, inserting unseen ids. Returns (rows, recycled rows).

        Every row hit by this call is marked used now, so it cannot be recycled by it.
        """
        ids = np.asarray(ids, dtype=np.int64)
        self.clock += 1
        rows = self.find(ids)
        new_ids = np.unique(ids[(rows == 0) & (ids != PAD)])
        recycled = np.zeros(0, dtype=np.int64)
        if len(new_ids):
            new_rows, recycled = self._allocate(len(new_ids), hit=rows[rows != 0])
            self._assign(new_ids, new_rows, recycled)
            self.evictions += len(recycled)
            rows = self.find(ids)
        self.last_used[rows[rows != 0]] = self.clock
        return rows, recycled

    def _allocate(self, n: int, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        free = min(n, self.capacity - 1 - self.n_used)
        need = n - free
        if need > self.n_used - len(np.unique(hit)):
            raise TableFull(
                f"id table of {self.capacity - 1} rows cannot hold {n} new ids next to "
                f"{len(np.unique(hit))} ids in use by the same batch; raise its capacity"
            )
        oldest = np.zeros(0, dtype=np.int64)
        if need:  # least recently used rows taken before this call, never one this batch hits
            age = self.last_used[1 : self.n_used + 1].copy()
            age[hit - 1] = np.iinfo(np.int64).max
            oldest = np.argpartition(age, need - 1)[:need] + 1
        fresh = np.arange(self.n_used + 1, self.n_used + 1 + free, dtype=np.int64)
        self.n_used += free
        return np.concatenate([fresh, oldest]), oldest

    def _assign(self, new_ids: np.ndarray, new_rows: np.ndarray, recycled: np.ndarray) -> None:
        keep = np.ones(len(self._keys), dtype=bool)
        if len(recycled):  # forget the ids whose rows are taken back
            gone = np.sort(self.row_key[recycled])
            keep = ~np.isin(self._keys, gone, assume_unique=True)
        self.row_key[new_rows] = new_ids
        keys, rows = self._keys[keep], self._rows[keep]
        at = np.searchsorted(keys, new_ids)  # new_ids is sorted: a linear merge, no re-sort
        self._keys, self._rows = np.insert(keys, at, new_ids), np.insert(rows, at, new_rows)

    # checkpoint: tensors and ints only, so torch.load(weights_only=True) reads it
    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "clock": self.clock,
            "n_used": self.n_used,
            "row_key": torch.from_numpy(self.row_key.copy()),
            "last_used": torch.from_numpy(self.last_used.copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"id table: expected capacity {self.capacity}, got {state['capacity']}")
        self.clock = int(state["clock"])
        self.n_used = int(state["n_used"])
        self.row_key = state["row_key"].numpy().astype(np.int64, copy=True)
        self.last_used = state["last_used"].numpy().astype(np.int64, copy=True)
        used = np.flatnonzero(self.row_key)
        order = np.argsort(self.row_key[used], kind="stable")
        self._keys, self._rows = self.row_key[used][order], used[order].astype(np.int64)
