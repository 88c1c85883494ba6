"""The learner's local copy of the item catalogue: item id -> feature tokens.

Records arrive from the catalogue topic or file (stream.contract.items) at any time, before
or after the item's first event; batches join them by item id (model.batch.encode). Bounded
like the id tables: at capacity the least recently updated item is forgotten (its features
then read as absent, zero, until a new record comes). Checkpointed with the learner.

Each item holds `levels` category tokens (0: level unknown) and up to `words` caption word
tokens (0: padding), both raw 64-bit token ids that the word table maps to rows.
"""
from __future__ import annotations

import numpy as np
import torch

from model.idtable import IdTable


class Catalogue:
    DEFAULT_CAPACITY = 1 << 17  # items; 18 tokens of 8 bytes each: 19 MB

    def __init__(self, capacity: int, levels: int = 2, words: int = 16) -> None:
        self.ids = IdTable(capacity)
        self.levels, self.words = levels, words
        self.features = np.zeros((capacity, levels + words), np.int64)  # row 0: no features

    def __len__(self) -> int:
        return len(self.ids)

    def update(self, items: np.ndarray, categories: list[tuple[int, ...]], words: list[tuple[int, ...]]) -> None:
        """Set the features of `items` (raw ids); a later entry of the same item wins."""
        items = np.asarray(items, np.int64)
        if not len(items):
            return
        last = {int(item): i for i, item in enumerate(items)}  # the latest record of each item
        keep = np.fromiter(last.values(), np.int64, len(last))[-(self.ids.capacity - 1) :]  # what fits
        block = np.zeros((len(keep), self.levels + self.words), np.int64)
        for j, i in enumerate(keep):
            cats, caption = categories[i][: self.levels], words[i][: self.words]
            block[j, : len(cats)] = cats
            block[j, self.levels : self.levels + len(caption)] = caption
        chunk = max(1, (self.ids.capacity - 1) // 2)  # a lookup recycles only rows it does not hit itself
        for start in range(0, len(keep), chunk):
            rows, _recycled = self.ids.lookup(items[keep[start : start + chunk]])
            self.features[rows] = block[start : start + chunk]  # a recycled row is overwritten whole

    def lookup(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(categories (n, levels), caption words (n, words)) token ids of raw `items`;
        zeros for items without a record (and for padding)."""
        rows = self.ids.find(np.asarray(items, np.int64))
        block = self.features[rows]
        return block[..., : self.levels], block[..., self.levels :]

    def tokens(self) -> np.ndarray:
        """Every distinct feature token held (to size the word table)."""
        used = self.features[1 : len(self.ids) + 1]
        return np.unique(used[used != 0])

    def state_dict(self) -> dict:
        n = len(self.ids) + 1
        return {"ids": self.ids.state_dict(), "levels": self.levels, "words": self.words,
                "features": torch.from_numpy(self.features[:n].copy())}

    def load_state_dict(self, state: dict) -> None:
        if (int(state["levels"]), int(state["words"])) != (self.levels, self.words):
            raise ValueError(f"catalogue: expected {self.levels} levels and {self.words} words, got "
                             f"{state['levels']} and {state['words']}")
        self.ids.load_state_dict(state["ids"])
        self.features[:] = 0
        block = state["features"].numpy()
        self.features[: len(block)] = block
