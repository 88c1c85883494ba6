"""The learner's local copy of the catalogue: id -> feature tokens, one table for items and
one for user profiles.

Records arrive from the catalogue topic or file (stream.contract.items) at any time, before
or after the id's first event; batches join them by id (model.tensors.encode). Bounded like
the id tables: at capacity the least recently updated id is forgotten (its features then
read as absent, zero, until a new record comes). Checkpointed with the learner.

Each id holds a fixed number of token slots per part (`widths`): an item its category
levels (0: level unknown) and caption words, a user its profile fields; 0 is padding. Tokens
are raw 64-bit token ids that the word table maps to rows.
"""
from __future__ import annotations

import numpy as np
import torch

from model.idtable import IdTable


class Catalogue:
    DEFAULT_CAPACITY = 1 << 17  # ids; an item's 18 tokens of 8 bytes each: 19 MB

    def __init__(self, capacity: int, widths: tuple[int, ...] = (2, 16)) -> None:
        self.ids = IdTable(capacity)
        self.widths = tuple(widths)
        self.starts = np.concatenate([[0], np.cumsum(self.widths)]).tolist()  # each part's first column
        self.features = np.zeros((capacity, self.starts[-1]), np.int64)  # row 0: no features

    def __len__(self) -> int:
        return len(self.ids)

    def update(self, ids: np.ndarray, *parts: list[tuple[int, ...]]) -> None:
        """Set the features of `ids` (raw ids): for each part, one token tuple per id (cut to
        the part's width); a later entry of the same id wins."""
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return
        last = {int(i): k for k, i in enumerate(ids)}  # the latest record of each id
        keep = np.fromiter(last.values(), np.int64, len(last))[-(self.ids.capacity - 1) :]  # what fits
        block = np.zeros((len(keep), self.starts[-1]), np.int64)
        for part, width, start in zip(parts, self.widths, self.starts):
            for j, k in enumerate(keep):
                tokens = part[k][:width]
                block[j, start : start + len(tokens)] = tokens
        chunk = max(1, (self.ids.capacity - 1) // 2)  # a lookup recycles only rows it does not hit itself
        for first in range(0, len(keep), chunk):
            rows, _recycled = self.ids.lookup(ids[keep[first : first + chunk]])
            self.features[rows] = block[first : first + chunk]  # a recycled row is overwritten whole

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """One (n, width) token block per part for raw `ids`; zeros for ids without a record
        (and for padding)."""
        block = self.features[self.ids.find(np.asarray(ids, np.int64))]
        return tuple(block[..., a:b] for a, b in zip(self.starts, self.starts[1:]))

    def tokens(self) -> np.ndarray:
        """Every distinct feature token held (to size the word table)."""
        used = self.features[1 : len(self.ids) + 1]
        return np.unique(used[used != 0])

    def state_dict(self) -> dict:
        n = len(self.ids) + 1
        return {"ids": self.ids.state_dict(), "widths": list(self.widths),
                "features": torch.from_numpy(self.features[:n].copy())}

    def load_state_dict(self, state: dict) -> None:
        if tuple(int(w) for w in state["widths"]) != self.widths:
            raise ValueError(f"catalogue: expected token widths {list(self.widths)}, got {list(state['widths'])}")
        self.ids.load_state_dict(state["ids"])
        self.features[:] = 0
        block = state["features"].numpy()
        self.features[: len(block)] = block
