"""USER's own points: the session encoder reads only the current session and the history
encoder the rest, the target intent is the query (search) or the user (rec), the caption
block starts at zero, the ablations train."""
import numpy as np
import pytest
import torch
from zoo import describe_items, tiny

from model.learner import Learner
from stream.contract.history import History, RecBehaviour, SearchBehaviour
from stream.contract.samples import Sample

HOUR = 3_600_000
NOW = 10 * HOUR
NEG = np.array([[11, 12, 13, 21, 22, 23]])


def sample(task="rec", earlier=11, current=12, query=(3, 4), user=5) -> Sample:
    """A rec click and a search two hours back (one session), then a rec click and a search
    a minute ago (the current session)."""
    rec = (RecBehaviour(NOW - 2 * HOUR, earlier), RecBehaviour(NOW - 60_000, current))
    search = (SearchBehaviour(NOW - 2 * HOUR + 1000, (1, 2), (21,)), SearchBehaviour(NOW - 30_000, (3,), (22, 23)))
    return Sample("e", user, NOW, task, (7,), 1, query if task == "search" else (), History(-1, rec, search))


def trained(**overrides) -> Learner:
    learner = Learner("user", seed=0, **tiny("user", dropout=0.0, **overrides))
    for _ in range(3):  # every item of the tests known, and weights off their start
        learner.learn_many([sample("rec"), sample("search"), sample("rec", 13, 11), sample("rec", 12, 13, user=6)])
    return learner


def score(learner: Learner, s: Sample) -> torch.Tensor:
    return learner.score([s], negatives={s.task: NEG})[s.task]


def test_without_the_history_encoder_only_the_current_session_counts():
    learner = trained(use_history_encoder=False)
    base = score(learner, sample())
    assert torch.equal(base, score(learner, sample(earlier=13)))  # an earlier session
    assert not torch.equal(base, score(learner, sample(current=13)))  # the current one


def test_the_history_encoder_reads_earlier_sessions():
    learner = trained()
    assert not torch.equal(score(learner, sample()), score(learner, sample(earlier=13)))


def test_the_target_intent_is_the_query_for_search_and_the_user_for_rec():
    learner = trained()
    rec, search = score(learner, sample("rec")), score(learner, sample("search"))
    assert not torch.equal(rec, score(learner, sample("rec", user=6)))
    assert not torch.equal(search, score(learner, sample("search", query=(1,))))
    assert torch.equal(search, score(learner, sample("search", user=6)))  # search reads the query, not the user


def test_captions_start_at_zero_and_move_scores_once_learned():
    learner = Learner("user", seed=0, **tiny("user", dropout=0.0))
    samples = [sample("rec"), sample("search")]
    learner.learn_many(samples)
    torch.nn.init.zeros_(learner.model.caption)  # as a fresh model: the caption block at zero
    before = score(learner, sample())
    describe_items(learner, samples)
    assert torch.equal(before, score(learner, sample()))  # captions add nothing at the start
    learner.learn_many(samples)
    assert learner.model.caption.abs().sum() > 0
    assert not torch.equal(before, score(learner, sample()))


@pytest.mark.parametrize("flag", ["use_session_encoder", "use_history_encoder", "use_item_features"])
def test_each_ablation_trains_with_finite_losses_and_drops_its_module(flag):
    full = Learner("user", seed=0, **tiny("user"))
    learner = Learner("user", seed=0, **tiny("user", **{flag: False}))
    assert sum(p.numel() for p in learner.model.parameters()) < sum(p.numel() for p in full.model.parameters())
    first = learner.learn_many([sample("rec"), sample("search")])
    for _ in range(5):
        last = learner.learn_many([sample("rec"), sample("search")])
    assert all(np.isfinite(v) for v in last.values())
    assert last["total"] < first["total"]
