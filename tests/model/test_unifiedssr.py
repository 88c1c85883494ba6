"""UnifiedSSR's own points: each task reads its own scenario, sessions start as the uniform
split, the fine-tuned copies re-branch from the joint model, the ablations train."""
import io

import numpy as np
import pytest
import torch
from zoo import sample, tiny

from model.learner import Learner
from model.unifiedssr import SessionModel, UnifiedSSRConfig

REC = [(1, 11), (3, 12), (5, 13)]
SEARCH = [(2, (1, 2), (21,)), (4, (3,), (22, 23))]
NEG = np.array([[11, 12, 13, 21, 22, 23]])


def test_rec_reads_the_rec_history_and_search_the_search_history_and_its_query():
    learner = Learner("unifiedssr", **tiny("unifiedssr"))
    learner.learn_many([sample("rec", REC, SEARCH), sample("search", REC, SEARCH, query=(3, 4))])
    score = lambda task, rec, search, query=(3, 4): learner.score(  # noqa: E731
        [sample(task, rec, search, query=query)], negatives={task: NEG})[task]
    other_rec, other_search = [(1, 13), (3, 12), (5, 11)], [(2, (4,), (23,)), (4, (3,), (21,))]
    assert torch.equal(score("rec", REC, SEARCH), score("rec", REC, other_search))
    assert not torch.equal(score("rec", REC, SEARCH), score("rec", other_rec, SEARCH))
    assert torch.equal(score("search", REC, SEARCH), score("search", other_rec, SEARCH))
    assert not torch.equal(score("search", REC, SEARCH), score("search", REC, other_search))
    assert not torch.equal(score("search", REC, SEARCH), score("search", REC, SEARCH, query=(1,)))


def test_sessions_start_as_the_uniform_split_of_the_valid_positions():
    ism = SessionModel(UnifiedSSRConfig(d=4, n_sessions=2, ism_temperature=0.05))
    torch.nn.init.zeros_(ism.f.weight)  # no offsets: sessions [0, 2) and [2, 4) of 4 valid positions
    H = torch.randn(1, 6, 4)
    valid = torch.tensor([[True] * 4 + [False] * 2])
    F_, I = ism(H, valid)
    torch.testing.assert_close(I[0], torch.stack([H[0, :2].mean(0), H[0, 2:4].mean(0)]), atol=1e-3, rtol=0)
    torch.testing.assert_close(F_[0, :4], H[0, :4] + I[0].repeat_interleave(2, 0), atol=1e-3, rtol=0)
    torch.testing.assert_close(F_[0, 4:], H[0, 4:])  # padding is in no session


def test_session_boundaries_move_with_the_predicted_offsets():
    ism = SessionModel(UnifiedSSRConfig(d=4, n_sessions=2, ism_temperature=0.05))
    torch.nn.init.zeros_(ism.f.weight)
    H, valid = torch.randn(1, 4, 4), torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        ism.b.fill_(10.0)  # s -> tanh(10) ~ 1: each session twice the uniform width, about its centre
    _, I = ism(H, valid)
    torch.testing.assert_close(I[0], torch.stack([H[0, :3].mean(0), H[0, 1:].mean(0)]), atol=1e-3, rtol=0)


def round_trip(learner: Learner) -> Learner:
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    return Learner.from_state_dict(torch.load(buf, weights_only=True))


def test_fine_tuned_copies_rebranch_from_the_joint_model_and_serve_their_task(batch_samples):
    learner = Learner("unifiedssr", **tiny("unifiedssr", finetune_every=3))
    joint, rec_copy, search_copy = learner.model.nets
    same = lambda a, b: all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # noqa: E731
    terms = learner.learn_many(batch_samples)
    assert {"rec/ft_bce", "search/ft_ssl", "search/ft_total", "rec/total"} <= terms.keys()
    assert not same(joint, rec_copy) and not same(rec_copy, search_copy)  # each learned its own loss
    learner.learn_many(batch_samples)
    learner.learn_many(batch_samples)
    learner.model.rebranch()
    assert same(joint, rec_copy) and same(joint, search_copy)
    restored = round_trip(learner)
    assert int(restored.model.steps) == 3
    assert learner.learn_many(batch_samples) == restored.learn_many(batch_samples)  # re-branched, then trained
    with torch.no_grad():  # the copy serves rec: changing the joint model changes nothing
        for p in joint.parameters():
            p.add_(1.0)
    learner.model.eval()
    before = learner.score(batch_samples, seed=2)
    for p in rec_copy.parameters():
        p.data.add_(0.5)
    after = learner.score(batch_samples, seed=2)
    assert not torch.equal(before["rec"], after["rec"]) and torch.equal(before["search"], after["search"])


@pytest.mark.parametrize("flags", [{"use_cross": False}, {"siamese": False}, {"shared_product": False},
                                   {"use_ism": False}, {"n_sessions": 1}, {"n_layers": 1}],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_every_ablation_trains(flags, batch_samples):
    learner = Learner("unifiedssr", **tiny("unifiedssr", **flags))
    for _ in range(2):
        terms = learner.learn_many(batch_samples)
        assert terms and all(np.isfinite(v) for v in terms.values())
    assert ("rec/ssl" in terms) == flags.get("use_ism", True)
    assert all(torch.isfinite(s).all() for s in learner.score(batch_samples, n_negatives=9).values())
