"""The candidates test-then-train scores every model on: the true item and 99 negatives
drawn once per row, from one item pool and one seed, and handed to every contender
(Learner.score(negatives=...)). So two models on one stream are judged on identical
candidates, and differences are the models', not the dice.

The pool is the stream's own, not a model's: the items the samples mention (targets,
history items, search clicks), in order of first appearance, bounded (the oldest leave
first). A batch's items join it before its negatives are drawn, so a new item is a
candidate as soon as it is a target, and a cold target is not the only cold candidate.
"""
from __future__ import annotations

from itertools import chain

import numpy as np
import torch

from model.evaluation import N_NEGATIVES, negatives_for


class ItemPool:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"item pool: expected a capacity of at least 1, got {capacity}")
        self.items = np.zeros(capacity, np.int64)
        self.where: dict[int, int] = {}  # item -> its slot
        self.size = self.next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, items) -> None:
        """Items not yet in the pool join it, in order; at capacity each takes the oldest's slot."""
        for item in items:
            if item == 0 or item in self.where:
                continue
            if self.size == len(self.items):
                del self.where[int(self.items[self.next])]
            else:
                self.size += 1
            self.items[self.next] = item
            self.where[item] = self.next
            self.next = (self.next + 1) % len(self.items)

    def array(self) -> np.ndarray:
        return self.items[: self.size]

    def state_dict(self) -> dict:
        return {"items": torch.from_numpy(self.items[: self.size].copy()), "next": self.next}

    def load_state_dict(self, state: dict) -> None:
        items, next_ = state["items"].numpy(), int(state["next"])
        self.items[:], self.where, self.size, self.next = 0, {}, 0, 0
        if len(items) > len(self.items):  # saved by a larger pool: keep its newest items
            self.add(np.roll(items, -next_).tolist())
            return
        self.items[: len(items)] = items
        self.where = {int(item): slot for slot, item in enumerate(items.tolist())}
        self.size = len(items)
        self.next = next_ % len(self.items) if self.size == len(self.items) else self.size


def mentioned(samples: list):
    """The items `samples` mention, in order: each sample's history, then its own items."""
    for s in samples:
        yield from (b.item for b in s.history.rec)
        yield from chain.from_iterable(b.clicks for b in s.history.search)
        yield from s.items


def shared_negatives(samples: list, limits, pool: ItemPool, seed: int) -> dict[str, np.ndarray] | None:
    """The negatives of `samples`' ranked rows for every contender, or None while the pool
    holds too few items to draw 99 distinct ones a user has not touched."""
    if len(pool) <= 2 * N_NEGATIVES:
        return None
    try:
        return negatives_for(samples, limits, pool.array(), seed)
    except ValueError:  # a user who touched nearly the whole pool: this batch goes unscored
        return None
