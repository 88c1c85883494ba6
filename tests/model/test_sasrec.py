"""SASRec's own points: causal attention in time order over rec and search clicks, the
query ignored, the ablations train."""
import numpy as np
import pytest
import torch
from zoo import sample, tiny

from model.layers import KeyMask
from model.learner import Learner

HISTORY = dict(rec=[(1, 11), (3, 12), (5, 13)], search=[(2, (1, 2), (21,)), (4, (3,), (22, 23))])


def scores_of(learner, samples):
    learner.learn_many(samples)  # the ids into the tables
    return learner.score(samples, negatives={s.task: np.array([[11, 12, 13, 21, 22, 23]]) for s in samples})


def test_the_query_is_ignored_and_the_same_history_scores_alike_for_both_tasks():
    learner = Learner("sasrec", **tiny("sasrec"))
    rec = sample("rec", **HISTORY, items=(7,))
    a = scores_of(learner, [rec, sample("search", **HISTORY, items=(7,), query=(3,))])
    b = learner.score([sample("search", **HISTORY, items=(7,), query=(9, 8))],
                      negatives={"search": np.array([[11, 12, 13, 21, 22, 23]])})
    assert torch.equal(a["rec"], a["search"]) and torch.equal(a["search"], b["search"])


def test_a_search_step_is_its_clicks_and_order_matters():
    learner = Learner("sasrec", **tiny("sasrec"))
    base = scores_of(learner, [sample("rec", **HISTORY)])["rec"]
    other_clicks = dict(HISTORY, search=[(2, (1, 2), (21,)), (4, (3,), (22,))])
    swapped = dict(HISTORY, rec=[(1, 11), (3, 13), (5, 12)])  # the same items, in another order
    clickless = dict(HISTORY, search=[*HISTORY["search"], (6, (5,), ())])  # a search without clicks is no step
    neg = {"rec": np.array([[11, 12, 13, 21, 22, 23]])}
    assert not torch.equal(base, learner.score([sample("rec", **other_clicks)], negatives=neg)["rec"])
    assert not torch.equal(base, learner.score([sample("rec", **swapped)], negatives=neg)["rec"])
    torch.testing.assert_close(base, learner.score([sample("rec", **clickless)], negatives=neg)["rec"])


def test_attention_is_causal():
    net = Learner("sasrec", **tiny("sasrec", n_layers=1)).model.eval()
    valid = torch.zeros(1, 60, dtype=torch.bool)
    valid[0, :4] = True
    mask = KeyMask(net.causal & valid.unsqueeze(1))
    X = torch.randn(1, 60, 16)
    nudged = X.clone()
    nudged[0, 2, 0] += 1.0  # the third step changes: the two before it must not notice, the one after must
    changed = (net.blocks[0](X, mask) - net.blocks[0](nudged, mask)).abs().amax(-1)[0] > 1e-6
    assert not changed[:2].any() and changed[2:4].all()


@pytest.mark.parametrize("flags", [{"use_pos": False}, {"shared_items": False}, {"n_layers": 0}, {"n_layers": 3}],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_every_ablation_trains(flags, batch_samples):
    learner = Learner("sasrec", **tiny("sasrec", **flags))
    for _ in range(2):
        terms = learner.learn_many(batch_samples)
        assert terms and all(np.isfinite(v) for v in terms.values())
    assert len(learner.model.tables()["items"]) == (1 if flags.get("shared_items", True) else 2)
    assert all(torch.isfinite(s).all() for s in learner.score(batch_samples, n_negatives=9).values())
