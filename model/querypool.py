"""L_Rel's pool of negative queries, kept by the learner (model.learner) and checkpointed with it."""
from __future__ import annotations

import numpy as np
import torch


class QueryPool:
    """A bounded ring of recent queries (raw word ids, padded): L_Rel's negative queries."""

    def __init__(self, capacity: int, width: int) -> None:
        self.words = np.zeros((capacity, width), np.int64)
        self.size = self.next = 0

    def add(self, queries: np.ndarray) -> None:
        queries = queries[(queries != 0).any(1)][-len(self.words) :, : self.words.shape[1]]
        at = (self.next + np.arange(len(queries))) % len(self.words)
        self.words[at] = 0
        self.words[at, : queries.shape[1]] = queries
        self.next = int((self.next + len(queries)) % len(self.words))
        self.size = min(len(self.words), self.size + len(queries))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.words[rng.integers(0, self.size, n)] if self.size and n else self.words[:0]

    def state_dict(self) -> dict:
        return {"words": torch.from_numpy(self.words.copy()), "size": self.size, "next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.words = state["words"].numpy().copy()
        self.size, self.next = int(state["size"]), int(state["next"])
