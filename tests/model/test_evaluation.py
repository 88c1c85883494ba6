"""The offline protocol: candidates independent of the model, cold targets scored and reported
honestly (issue 13 points 2 and 8)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY

from model.batch import collate
from model.tensors import UNKNOWN, encode
from model.evaluation import draw_negatives, evaluable, evaluate_samples, item_pool
from model.learner import Learner


class Spy:
    """Records the negatives each score() call receives, then scores as the learner would."""

    def __init__(self, learner) -> None:
        self.learner, self.seen = learner, []
        self.ids, self.limits = learner.ids, learner.limits

    def score(self, batch, **kwargs):
        self.seen.append({k: v.copy() for k, v in (kwargs.get("negatives") or {}).items()})
        return self.learner.score(batch, **kwargs)


def test_two_checkpoints_of_one_run_are_scored_on_identical_candidates(samples):
    test = evaluable(samples)[-60:]
    learner = Learner(**TINY, seed=0)
    early = Spy(Learner.from_state_dict(learner.state_dict()))
    for _ in range(3):
        learner.learn_many(samples[:200])
    late = Spy(learner)
    evaluate_samples(early, test, seed=7, batch_size=16)
    evaluate_samples(late, test, seed=7, batch_size=25)  # other batches too: candidates follow the rows
    flat = lambda spy: {t: np.concatenate([c[t] for c in spy.seen if t in c]) for t in ("rec", "search")}  # noqa: E731
    a, b = flat(early), flat(late)
    for task in ("rec", "search"):
        np.testing.assert_array_equal(a[task], b[task])
    other = Spy(learner)
    evaluate_samples(other, test, seed=8, batch_size=16)
    assert not np.array_equal(flat(other)["rec"], a["rec"])  # the seed, and only the seed, changes them


def test_negatives_come_from_the_pool_and_never_from_what_the_user_touched(samples):
    s = next(x for x in samples if x.task == "search" and len(x.items) > 1 and x.history.rec)
    pool = item_pool(samples)
    negs = draw_negatives(s, s.items[0], pool, np.array([pool[0]]), 99, seed=3)
    touched = {*s.items, pool[0], *(b.item for b in s.history.rec)}
    assert len(set(negs.tolist())) == 99 and set(negs.tolist()) <= set(pool.tolist())
    assert not set(negs.tolist()) & touched
    with pytest.raises(ValueError, match="more items"):
        draw_negatives(s, s.items[0], pool[:50], np.zeros(0, np.int64), 99, seed=3)


def test_cold_items_score_through_the_learned_unknown_vector_and_are_reported_apart(samples):
    learner = Learner(**TINY, seed=0)
    for _ in range(3):
        learner.learn_many(samples[:300])  # the later samples hold items never trained on
    embed = learner.model.nets[0].embed
    rows = SimpleNamespace(item_rows=torch.tensor([UNKNOWN, 0]), item_categories=None, item_caption=None)
    unknown = embed.items(rows, None)
    assert unknown[0].abs().sum() > 0 and unknown[1].abs().sum() == 0  # not the padding vector
    assert any(p is embed.unknown_item for p in learner.model.parameters())

    test = evaluable(samples[300:])
    cold_targets = {t for s in test for t in s.items} - set(learner.ids["items"]._keys.tolist())
    assert cold_targets, "the planted log should leave some test items untrained"
    results = evaluate_samples(learner, test, seed=1)
    for task, r in results.items():
        assert 0 < r["cold_share"] < 1
        assert r["warm"]["rows"] + r["cold"]["rows"] == r["rows"]
        assert r["cold"]["rows"] == round(r["cold_share"] * r["rows"])
        assert r["nonfinite"] == 0 and np.isfinite(r["HR@10"])


def test_id_dropout_trains_the_unknown_vector_and_can_be_turned_off(batch_samples):
    learner = Learner(**TINY, seed=0)
    learner.learn_many(batch_samples)  # the items are known now
    unknown = learner.model.nets[0].embed.unknown_item
    learner.model.train()

    def gradient(rate: float) -> torch.Tensor:
        step, _ = encode(collate(batch_samples, learner.limits), learner.ids, np.random.default_rng(0), train=True,
                         n_negatives=4, unknown_rate=rate)
        _, losses = learner.model(step)
        (grad,) = torch.autograd.grad(losses["total"], unknown, allow_unused=True)
        return torch.zeros_like(unknown) if grad is None else grad

    assert gradient(0.3).abs().sum() > 0
    assert gradient(0.0).abs().sum() == 0
    assert Learner.from_state_dict(Learner(**TINY, unknown_rate=0.0).state_dict()).unknown_rate == 0.0
