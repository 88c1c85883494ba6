"""Tiny configs of every model of the zoo, so the contract suite runs over each in seconds."""
from __future__ import annotations

import numpy as np
from conftest import TINY

from model.batch import collate
from model.tensors import encode
from model.learner import Learner
from model.registry import MODELS
from stream.contract.history import History, RecBehaviour, SearchBehaviour
from stream.contract.ids import word_id
from stream.contract.items import ItemRecord, ProfileRecord, category_token, profile_token
from stream.contract.samples import Sample

SIZES = {k: TINY[k] for k in ("n_users", "n_items", "n_words")}
_TINY = {
    "unisar": TINY,
    "popularity": SIZES,
    "sasrec": {**SIZES, "d": 16},
    "unifiedssr": {**SIZES, "d": 16},
    "user": {**SIZES, "d": 16, "d_ff": 16},
}
NAMES = sorted(MODELS)


def tiny(name: str, **overrides) -> dict:
    """The model's tiny config with `overrides`."""
    return {**_TINY[name], **overrides}


def training_step(learner: Learner, samples: list, unknown_rate: float = 0.2):
    """The tensors of one training step, as learn_many builds them; a fifth of the
    candidates shown as unknown items, so the unknown-item vector is used."""
    batch = collate(samples, learner.limits)
    learner.queries.add(batch.queries)
    rng = np.random.default_rng(0)
    step, _ = encode(batch, learner.ids, rng, train=True, n_negatives=4, n_rel_items=32,
                     rel_queries=learner.queries.sample(rng, 32), unknown_rate=unknown_rate,
                     catalogue=learner.feature_catalogue(), profiles=learner.feature_profiles())
    return step


def describe_items(learner: Learner, samples: list) -> None:
    """Catalogue records for every item of `samples` (two category levels and two caption
    words, shared between items), so feature weights take part in the step."""
    items = sorted({i for s in samples for i in s.items} | {b.item for s in samples for b in s.history.rec}
                   | {c for s in samples for b in s.history.search for c in b.clicks})
    learner.add_items(ItemRecord(item, (category_token(1, item % 3), category_token(2, item % 7)),
                                 (word_id(item % 5), word_id("shoe"))) for item in items)


def describe_users(learner: Learner, samples: list) -> None:
    """A profile for every user of `samples` (two fields, values shared between users), so
    profile weights take part in the step."""
    users = sorted({s.user for s in samples})
    learner.add_items(ProfileRecord(user, (profile_token("age", user % 4), profile_token("gender", user % 2)))
                      for user in users)


def sample(task, rec=(), search=(), items=(7,), query=(3,), user=5):
    """A sample by hand: rec = [(ts, item)], search = [(ts, words, clicks)]."""
    history = History(-1, tuple(RecBehaviour(t, i) for t, i in rec), tuple(SearchBehaviour(t, q, c) for t, q, c in search))
    return Sample("e", user, 10_000, task, items, 1, query if task == "search" else (), history)
