"""The learner contract, run over every model of the zoo, and row recycling."""
import dataclasses
import io

import numpy as np
import pytest
import torch
from conftest import TINY
from zoo import NAMES, describe_items, describe_users, sample, tiny, training_step

from model.learner import Learner
from stream.contract.history import History, RecBehaviour
from stream.contract.samples import Sample


def make(name: str, seed: int = 0, **overrides) -> Learner:
    return Learner(name, seed=seed, **tiny(name, **overrides))


def round_trip(learner: Learner) -> Learner:
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    return Learner.from_state_dict(torch.load(buf, weights_only=True))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_scores_and_resumes_identically(name, batch_samples):
    learner = make(name)
    for _ in range(2):
        learner.learn_many(batch_samples)
    restored = round_trip(learner)
    a, b = learner.score(batch_samples, seed=5), restored.score(batch_samples, seed=5)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert learner.learn_many(batch_samples) == restored.learn_many(batch_samples)  # training resumes exactly


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_other_seed_other_model(name, batch_samples):
    # few negatives from the tiny pool, so two seeds draw different ones: with the default 16 both
    # draw nearly every item, and popularity (random only in its draws) learns the same either way
    runs = [Learner(name, seed=seed, n_negatives=4, **tiny(name)) for seed in (7, 7, 8)]
    terms = [[r.learn_many(batch_samples) for _ in range(2)] for r in runs]
    scores = [r.score(batch_samples, seed=1) for r in runs]
    assert terms[0] == terms[1] and all(torch.equal(scores[0][k], scores[1][k]) for k in scores[0])
    assert terms[0] != terms[2]


@pytest.mark.parametrize("name", NAMES)
def test_unseen_users_and_items_score_without_being_learned(name, batch_samples):
    learner = make(name)
    learner.learn_many(batch_samples)
    stranger = Sample("x", 987654321, 10, "rec", (123456789,), 1, (), History(-1, (RecBehaviour(1, 55555),), ()))
    before = {k: len(t) for k, t in learner.ids.items()}
    scores = learner.score([stranger], n_negatives=20)
    assert scores["rec"].shape == (1, 21) and torch.isfinite(scores["rec"]).all()
    assert {k: len(t) for k, t in learner.ids.items()} == before


@pytest.mark.parametrize("name", NAMES)
def test_recycled_rows_start_fresh_weights_and_adam_state(name, batch_samples):
    learner = make(name, n_items=200)
    learner.learn_many(batch_samples)
    table = learner.model.tables()["items"][0]
    state = learner.optimizers["tables"].state[table.weight]
    rows = torch.from_numpy(learner.ids["items"].find(np.array([s.items[0] for s in batch_samples[:5]])))
    assert (state["exp_avg_sq"][rows] != 0).any()
    before = table.weight[rows].clone()
    learner._recycle({"items": rows.numpy()})
    assert not torch.equal(table.weight[rows], before)
    assert (state["exp_avg"][rows] == 0).all() and (state["exp_avg_sq"][rows] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_full_table_recycles_stale_rows_during_learning(name, batch_samples):
    learner = make(name, n_items=260)
    learner.learn_many(batch_samples)
    taken = learner.ids["items"].n_used  # rows 1..taken hold the first batch's items
    fresh = [
        Sample(f"n{i}", 1, 10, "rec", (10**12 + i,), 1, (),
               History(-1, tuple(RecBehaviour(t, 10**12 + 100 * i + t) for t in range(30)), ()))
        for i in range(6)
    ]
    learner.learn_many(fresh)  # ~180 new items do not fit beside the old ones: stale rows are recycled
    table = learner.model.tables()["items"][0]
    state = learner.optimizers["tables"].state[table.weight]
    rows = learner.ids["items"].find(np.array([s.items[0] for s in fresh] + [b.item for s in fresh for b in s.history.rec]))
    rows = torch.from_numpy(rows[rows <= taken])  # recycled: they held old items with Adam state
    assert len(rows) > 50
    # one Adam step from zero moments leaves exp_avg_sq = 0.1 * exp_avg^2 (betas 0.9, 0.999)
    torch.testing.assert_close(state["exp_avg_sq"][rows], 0.1 * state["exp_avg"][rows] ** 2, rtol=1e-3, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_no_nan_with_empty_sub_histories_clickless_searches_or_no_history(name):
    samples = [
        sample("rec", rec=[(1, 11), (2, 12)]),  # no search history
        sample("rec", search=[(1, (1,), (21,))]),  # no rec history
        sample("search", rec=[(1, 11)], search=[(2, (2, 3), ())], items=(8, 9)),  # a search without clicks
        sample("search", search=[(1, (2,), ()), (2, (4,), ())], items=(8,)),  # only clickless searches
        sample("rec"),  # all padding
        sample("search", items=(9,)),  # all padding
    ]
    learner = make(name)
    learner.learn_many(samples)  # puts the ids in the tables
    learner.model.train()
    scores, losses = learner.model(training_step(learner, samples))
    losses["total"].backward()
    assert all(torch.isfinite(s).all() for s in scores.values())
    assert all(torch.isfinite(v) for v in losses.values())
    for pname, p in learner.model.named_parameters():
        if p.grad is not None:
            g = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
            assert torch.isfinite(g).all(), pname
    assert all(torch.isfinite(s).all() for s in learner.score(samples, n_negatives=3).values())


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_gradient_from_the_total_loss(name, batch_samples):
    learner = make(name)
    describe_items(learner, batch_samples)  # item features, for a model that embeds them
    describe_users(learner, batch_samples)  # and user profiles
    learner.learn_many(batch_samples)
    learner.model.train()
    _, losses = learner.model(training_step(learner, batch_samples))
    losses["total"].backward()
    missing = []
    for pname, p in learner.model.named_parameters():
        g = None if p.grad is None else (p.grad.coalesce().values() if p.grad.is_sparse else p.grad)
        if g is None or not g.abs().sum() > 0:
            missing.append(pname)
    assert not missing


def test_table_lr_moves_only_the_embedding_tables_and_survives_a_checkpoint(batch_samples):
    slow, fast = Learner(**TINY), Learner(**TINY, table_lr=1e-2)
    moved = {}
    for learner in (slow, fast):
        table = learner.model.nets[0].embed.item
        before = table.weight.detach().clone()
        dense = {n: p.detach().clone() for n, p in learner.model.named_parameters() if "embed" not in n}
        learner.learn_many(batch_samples)
        moved[learner] = (table.weight.detach() - before).abs().max().item()
        # One Adam step moves every touched parameter by about its lr: dense ones by 1e-3 in both.
        assert max((p.detach() - dense[n]).abs().max().item()
                   for n, p in learner.model.named_parameters() if n in dense) < 1.5e-3
    assert moved[slow] < 1.5e-3 < 5e-3 < moved[fast]
    restored = round_trip(fast)
    assert restored.table_lr == 1e-2 and restored.optimizers["tables"].param_groups[0]["lr"] == 1e-2
    assert slow.table_lr == slow.lr  # the default: one learning rate for everything


def test_checkpoints_from_before_table_lr_load_with_one_learning_rate(batch_samples):
    learner = Learner(**TINY)
    state = learner.state_dict()
    del state["learner"]["table_lr"]
    assert Learner.from_state_dict(state).table_lr == learner.lr


def test_learning_rates_must_be_positive():
    with pytest.raises(ValueError, match="expected learning rates > 0"):
        Learner(**TINY, table_lr=0.0)


@pytest.mark.parametrize("name", NAMES)
def test_rec_exposures_as_labelled_negatives_train_every_model(name, batch_samples):
    assert any(s.task == "rec" and s.label == 0 for s in batch_samples)
    learner = Learner(name, exposures=True, **tiny(name))
    terms = [learner.learn_many(batch_samples) for _ in range(2)]
    assert terms[-1] and all(np.isfinite(v) for v in terms[-1].values())
    assert Learner.from_state_dict(learner.state_dict()).asked_exposures  # the checkpoint keeps the choice
    exposures_only = [s for s in batch_samples if s.task == "rec" and s.label == 0]
    terms = learner.learn_many(exposures_only)
    assert all(np.isfinite(v) for v in terms.values())
    assert learner.exposures == (name != "user") and (terms == {}) == (name == "user")  # USER's softmax needs a click


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_with_nothing_to_rank_scores_to_nothing(name, batch_samples):
    """Only rec exposures (not ranked) or no samples at all: no scores, no error. A trainer
    scoring a share of a small batch met this and stopped (benchmarks/freshness.py)."""
    learner = Learner(name, **tiny(name))
    learner.learn_many(batch_samples)
    exposures_only = [s for s in batch_samples if s.task == "rec" and s.label == 0]
    assert exposures_only and learner.score(exposures_only) == {} and learner.score([]) == {}


def test_an_exposure_lowers_the_score_of_the_item_shown(batch_samples):
    shown = next(s for s in batch_samples if s.task == "rec" and s.label == 0)
    clicked = dataclasses.replace(shown, label=1)
    after = {}
    for label, exposure in (("without", False), ("with", True)):
        learner = Learner("unisar", seed=0, exposures=exposure, **tiny("unisar"))
        for _ in range(5):
            learner.learn_many(batch_samples)
        after[label] = float(learner.score([clicked], seed=3, n_negatives=5)["rec"][0, 0])
    assert after["with"] < after["without"]


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_trains_with_fp32_weights_and_losses(name, batch_samples):
    learner = Learner(name, precision="bf16", **tiny(name))
    assert learner.bf16
    for _ in range(2):
        terms = learner.learn_many(batch_samples)
        assert terms and all(np.isfinite(v) for v in terms.values())
    assert all(p.dtype == torch.float32 for p in learner.model.parameters())
    scores = learner.score(batch_samples, n_negatives=9)
    assert all(s.dtype == torch.float32 and torch.isfinite(s).all() for s in scores.values())
    assert Learner.from_state_dict(learner.state_dict()).precision == "bf16"
    with pytest.raises(ValueError, match="precision: expected one of"):
        Learner(name, precision="fp16", **tiny(name))


def test_checkpoint_keeps_the_user_profiles(batch_samples):
    learner = make("unisar")
    describe_users(learner, batch_samples)
    learner.learn_many(batch_samples)
    restored = round_trip(learner)
    users = np.array(sorted({s.user for s in batch_samples}) + [123456789])
    assert len(restored.profiles) == len(learner.profiles) == len(users) - 1
    assert np.array_equal(restored.profiles.lookup(users)[0], learner.profiles.lookup(users)[0])
    a, b = learner.score(batch_samples, seed=5), restored.score(batch_samples, seed=5)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_an_older_format_is_refused_with_a_clear_error(batch_samples):
    state = make("unisar").state_dict()
    state["format"] = 2
    with pytest.raises(ValueError, match="expected format 3, got 2 \\(an older release's: train it again\\)"):
        Learner.from_state_dict(state)
