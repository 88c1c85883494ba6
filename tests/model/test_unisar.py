"""UniSAR's components: the cross-type mask, robustness, gradients, ablations, losses."""
import numpy as np
import pytest
import torch
from conftest import TINY

from model.batch import collate, ranked
from model.tensors import encode
from model.learner import Learner
from stream.contract.history import History, RecBehaviour, SearchBehaviour
from stream.contract.samples import Sample


def step_of(learner: Learner, samples: list):
    batch = collate(samples, learner.limits)
    learner.queries.add(batch.queries)
    rng = np.random.default_rng(0)
    step, _ = encode(batch, learner.ids, rng, train=True, n_negatives=4, n_rel_items=32,
                     rel_queries=learner.queries.sample(rng, 32))
    return step


def sample(task, rec=(), search=(), items=(7,), query=(3,)):
    history = History(-1, tuple(RecBehaviour(t, i) for t, i in rec), tuple(SearchBehaviour(t, q, c) for t, q, c in search))
    return Sample("e", 5, 10_000, task, items, 1, query if task == "search" else (), history)


INTERLEAVED = sample("rec", rec=[(1, 11), (3, 12), (5, 13)], search=[(2, (1, 2), (21,)), (4, (3,), (22, 23)), (6, (4,), ())])


def mixed_outputs(use_mask: bool, E: torch.Tensor, step, net):
    valid = torch.cat([step.tasks["rec"].rec_items != 0, step.tasks["rec"].search_query != 0], 1)
    return net.cross_transitions(step.tasks["rec"], E, valid)


@pytest.mark.parametrize("use_mask", [True, False])
def test_a_behaviour_attends_only_to_behaviours_of_the_other_type(use_mask):
    learner = Learner(**TINY, use_mask=use_mask)
    net = learner.model.nets[0].eval()
    step = step_of(learner, [INTERLEAVED])
    R = learner.config.max_rec
    E = torch.randn(1, R + learner.config.max_search, TINY["d"])
    H_s2r, H_r2s = mixed_outputs(use_mask, E, step, net)
    changed = lambda a, b: (a - b).abs().amax(-1)[0] > 1e-6  # noqa: E731  per position
    # nudge rec slot 0: other rec positions must not notice (same type), search positions must
    E_rec = E.clone()
    E_rec[0, 0] += 1.0
    s2r, r2s = mixed_outputs(use_mask, E_rec, step, net)
    assert changed(s2r, H_s2r)[0] and changed(r2s, H_r2s)[:3].all()
    assert changed(s2r, H_s2r)[1:3].any() == (not use_mask)
    # nudge search slot 0: rec positions notice, the other search positions do not
    E_search = E.clone()
    E_search[0, R] += 1.0
    s2r, r2s = mixed_outputs(use_mask, E_search, step, net)
    assert changed(s2r, H_s2r)[:3].all() and changed(r2s, H_r2s)[0]
    assert changed(r2s, H_r2s)[1:3].any() == (not use_mask)


def test_no_nan_with_empty_sub_histories_clickless_searches_or_no_history():
    samples = [
        sample("rec", rec=[(1, 11), (2, 12)]),  # no search history
        sample("rec", search=[(1, (1,), (21,))]),  # no rec history
        sample("search", rec=[(1, 11)], search=[(2, (2, 3), ())], items=(8, 9)),  # a search without clicks
        sample("rec"),  # all padding
        sample("search", items=(9,)),  # all padding
    ]
    learner = Learner(**TINY)
    learner.learn_many(samples)  # puts the ids in the tables
    step = step_of(learner, samples)
    learner.model.train()
    scores, losses = learner.model(step)
    losses["total"].backward()
    assert all(torch.isfinite(s).all() for s in scores.values())
    assert all(torch.isfinite(v) for v in losses.values())
    for name, p in learner.model.named_parameters():
        if p.grad is not None:
            g = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
            assert torch.isfinite(g).all(), name
    assert all(torch.isfinite(s).all() for s in learner.score(samples, n_negatives=3).values())


ABLATIONS = [
    {"use_s2s": False}, {"use_r2r": False}, {"use_r2s": False}, {"use_s2r": False},
    {"use_r2s": False, "use_s2r": False}, {"use_mask": False}, {"use_align": False}, {"use_rel": False},
    {"use_rec_fusion": False}, {"use_search_fusion": False}, {"use_mmoe": False}, {"joint": False},
]


@pytest.mark.parametrize("flags", ABLATIONS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_every_ablation_trains(flags, batch_samples):
    learner = Learner(**TINY, **flags)
    for _ in range(2):
        terms = learner.learn_many(batch_samples)
        assert terms and all(np.isfinite(v) for v in terms.values())
    assert ("rec/align" in terms) == flags.get("use_align", True)
    assert ("rec/rel" in terms) == flags.get("use_rel", True)
    scores = learner.score(batch_samples, n_negatives=9)
    assert all(torch.isfinite(s).all() for s in scores.values())


def test_each_loss_term_falls_on_a_small_learnable_problem(batch_samples):
    learner = Learner(**TINY, lr=1e-2, seed=3)  # rows start at N(0, 0.1^2): a faster pace shows every term fall within 60 steps
    history = [learner.learn_many(batch_samples) for _ in range(60)]
    for term in ("rec/bce", "search/bce", "rec/rel", "search/rel", "rec/align", "search/align"):
        first = np.mean([h[term] for h in history[1:6]])  # step 0: the query pool is still empty
        last = np.mean([h[term] for h in history[-5:]])
        assert last < 0.9 * first, (term, first, last)


def test_a_cold_item_is_scored_through_its_catalogue_features(batch_samples):
    """An item the model never trained on, described by the catalogue, scores unlike one
    without a record; with the ablation switch the record changes nothing."""
    from dataclasses import replace

    from zoo import describe_items

    from stream.contract.items import ItemRecord, category_token

    scores = {}
    for features in (True, False):
        learner = Learner(**TINY, use_item_features=features)
        describe_items(learner, batch_samples)
        for _ in range(3):
            learner.learn_many(batch_samples)
        probe = [replace(s, items=(987654321,)) for s in batch_samples if s.task == "rec" and s.label == 1][:4]
        before = learner.score(probe, n_negatives=5, seed=3)["rec"][:, 0]
        learner.add_items([ItemRecord(987654321, (category_token(1, 0), category_token(2, 0)), ())])
        scores[features] = (before, learner.score(probe, n_negatives=5, seed=3)["rec"][:, 0])
    assert not torch.allclose(*scores[True])
    assert torch.equal(*scores[False])


def test_a_profile_changes_its_users_scores_and_no_one_elses(batch_samples):
    """A profile record moves the scores of its user's rows and leaves every other row as it
    was; with the ablation switch it changes nothing."""
    from stream.contract.items import ProfileRecord, profile_token

    users = sorted({s.user for s in batch_samples})
    profiled = users[0]
    for features in (True, False):
        learner = Learner(**TINY, use_user_features=features)
        # every user but one has a profile: the profile block learns, then one more arrives
        learner.add_items(ProfileRecord(u, (profile_token("age", u % 3),)) for u in users[1:])
        for _ in range(3):
            learner.learn_many(batch_samples)
        before = learner.score(batch_samples, n_negatives=5, seed=3)
        learner.add_items([ProfileRecord(profiled, (profile_token("age", 0), profile_token("gender", "F")))])
        after = learner.score(batch_samples, n_negatives=5, seed=3)
        for task, ranked_rows in ranked(batch_samples, learner.limits).items():
            rows = torch.tensor([s.user == profiled for s, _item in ranked_rows])
            assert rows.any() and not rows.all()
            assert torch.equal(before[task][~rows], after[task][~rows])
            assert torch.equal(before[task][rows], after[task][rows]) != features, (task, features)


def test_a_user_embeds_through_id_and_profile_and_to_zero_with_neither():
    from model.unisar import Embeddings, UniSARConfig

    torch.manual_seed(0)
    embed = Embeddings(UniSARConfig(n_users=10, n_items=10, n_words=10, d=8))
    with torch.no_grad():
        embed.profile_proj.normal_()  # as after training: the block starts at zero
    W = embed.words(torch.arange(4))  # the step's words; local index 0 is padding
    rows = torch.tensor([3, 3, 0, 0])  # a known user twice, an unknown user twice
    profile = torch.tensor([[1, 2], [0, 0], [1, 2], [0, 0]])
    U = embed.users(rows, profile, W)
    assert not torch.equal(U[0], U[1])  # the profile moves a known user
    assert U[2].abs().sum() > 0  # an unknown user with a profile: the profile alone
    assert torch.equal(U[3], torch.zeros(8))  # neither: zero, as padding
    assert torch.equal(embed.users(rows, None, W)[1], U[1])  # no profiles at all: as without one


@pytest.mark.parametrize("use_mmoe", [True, False])
def test_prediction_layer_splits_its_input_without_changing_the_maths(use_mmoe):
    """The prediction layer multiplies the per-row part (user, query) once per row, not once
    per candidate; the result is the layer applied to the concatenation."""
    from model.unisar import Predictor, UniSARConfig

    torch.manual_seed(0)
    cfg = UniSARConfig(n_users=10, n_items=10, n_words=10, use_mmoe=use_mmoe)
    layer = Predictor(cfg).eval()
    x, row = torch.randn(3, 7, 3 * cfg.d), torch.randn(3, 2 * cfg.d)
    joined = torch.cat([x, row.unsqueeze(1).expand(-1, 7, -1)], -1)
    if use_mmoe:
        bottom, experts = layer.bottom, layer.bottom.experts_of["search"]
        w, b = bottom.expert_w[experts].flatten(0, 1), bottom.expert_b[experts].flatten()
        h = torch.relu(torch.nn.functional.linear(joined, w, b)).unflatten(-1, (len(experts), bottom.d_e))
        h = (bottom.gates["search"](joined).softmax(-1).unsqueeze(-1) * h).sum(-2)
    else:
        h = layer.bottom["search"](joined)
    expected = layer.heads["search"](layer.towers["search"](h)).squeeze(-1)
    assert torch.allclose(layer(x, row, "search"), expected, atol=1e-6)
