"""Data-parallel steps of the learner: what its ranks exchange, and how they keep their id
tables identical. No torch.distributed here: the collectives come in through `StepSync`
(stream.train.distributed.GlooSync).

With `Learner.learn_many(samples, sync=...)` and world size > 1, every rank holds the same
learner and learns from its own samples; `sync` (a `StepSync`: stream.train.distributed.GlooSync
over torch.distributed) carries the collectives. The id tables stay identical on every rank
because no rank inserts on its own: the ranks all-gather their batches' raw ids and queries,
and each rank applies the same union, in rank order, to its tables and query pool (same
lookups, same LRU clock, same recycled rows, reset with the same seeded values); the local
encode then only finds rows. Gradients are averaged weighted by each rank's rows: dense ones
in one all-reduce (with a flag per parameter, so a parameter no rank used stays untouched
by Adam, as in one process), embedding tables as sparse all-reduces (only the touched
rows travel). Every rank then takes the same optimiser step, so parameters, optimiser state
and `step` stay equal; `digest()` lets the ranks check that.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from model.batch import Batch
from model.idtable import KINDS, IdTable


class StepSync(Protocol):
    """The collectives a data-parallel step needs; every rank calls them in the same order."""

    rank: int
    world_size: int

    def all_gather(self, array: np.ndarray) -> list[np.ndarray]:
        """Every rank's 1-D int64 array (lengths may differ), in rank order."""

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a dense or sparse COO tensor (the same on every rank)."""


class FindOnly:
    """An id table seen through `encode(train=True)` after the step's union was inserted:
    lookups only find, so the local encode cannot change the table on one rank alone."""

    def __init__(self, table: IdTable) -> None:
        self.table = table
        self.n_used = table.n_used
        self.row_key = table.row_key  # the id held by each row

    def __len__(self) -> int:
        return len(self.table)

    def find(self, ids: np.ndarray) -> np.ndarray:
        return self.table.find(ids)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.table.find(ids)
        if ((rows == 0) & (ids != 0)).any():  # an id batch_ids() missed: fail, never train on row 0
            raise RuntimeError("data-parallel step: an id of the batch is missing from the all-gathered union")
        return rows, np.zeros(0, np.int64)


def batch_ids(batch: Batch) -> dict[str, np.ndarray]:
    """The distinct raw ids a training `encode` of `batch` looks up, per table (without the
    words of L_Rel's pooled queries, which every rank draws alike)."""
    tasks = list(batch.tasks.values())
    cat = lambda arrays: np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0, np.int64)  # noqa: E731
    out = {
        "users": cat([t.user for t in tasks]),
        "items": cat([a for t in tasks for a in (t.rec_items, t.search_clicks, t.target)]),
        "words": np.ravel(batch.queries) if len(batch.tasks) else np.zeros(0, np.int64),
    }
    return {k: np.unique(v[v != 0]).astype(np.int64) for k, v in out.items()}


def pack_step(ids: dict[str, np.ndarray], queries: np.ndarray) -> np.ndarray:
    """One rank's ids and queries as one int64 array (one all-gather per step)."""
    q = queries if queries.ndim == 2 else queries.reshape(0, 1)
    head = [len(ids[k]) for k in KINDS] + list(q.shape)
    return np.concatenate([np.array(head, np.int64), *(ids[k] for k in KINDS), q.ravel()]).astype(np.int64)


def unpack_step(packed: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    sizes, (rows, width) = packed[: len(KINDS)], packed[len(KINDS) : len(KINDS) + 2]
    at, ids = len(KINDS) + 2, {}
    for kind, n in zip(KINDS, sizes):
        ids[kind] = packed[at : at + n]
        at += n
    return ids, packed[at : at + rows * width].reshape(rows, width)


def union_lookup(tables: dict[str, IdTable], per_rank: list[dict[str, np.ndarray]],
                 extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Insert every rank's ids (and `extra`) into `tables`: one lookup per table on the
    concatenation in rank order, as every rank does with the same arguments, so the tables
    stay identical. Returns the recycled rows per table."""
    recycled = {}
    for kind, table in tables.items():
        parts = [ids.get(kind, np.zeros(0, np.int64)) for ids in per_rank]
        if extra is not None and kind in extra:
            parts.append(np.ravel(extra[kind]))
        _, recycled[kind] = table.lookup(np.concatenate(parts) if parts else np.zeros(0, np.int64))
    return recycled
