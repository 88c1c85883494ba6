"""Helpers of the service's tests: a tiny UniSAR config, a history, a trained model."""
from __future__ import annotations

import numpy as np

from model.learner import Learner
from stream.contract.history import History, RecBehaviour, SearchBehaviour
from stream.contract.ids import item_id, user_id, word_id
from stream.contract.samples import Sample

TINY = dict(n_users=256, n_items=1024, n_words=256, d=16, d_ff=16, d_expert=16,
            tower_dims=(16, 16), head_dims=(16, 8), rel_negatives=64)


def history_of(n: int = 5) -> History:
    return History(rec=tuple(RecBehaviour(1000 + i, item_id(f"i{i}")) for i in range(n)),
                   search=(SearchBehaviour(1500, (word_id("red"),), (item_id("i1"),)),))


def trained_learner(steps: int = 2, seed: int = 0) -> Learner:
    learner = Learner("unisar", seed=seed, **TINY)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        learner.learn_many([Sample(f"e{j}", user_id(f"u{j % 7}"), 0, "rec", (item_id(f"i{rng.integers(50)}"),), 1, (),
                                   history_of()) for j in range(32)])
    return learner
