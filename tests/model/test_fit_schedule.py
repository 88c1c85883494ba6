"""`unisar fit`'s schedule: a validation split carved from training by the held-out rule,
reduce-on-plateau, early stopping and the best checkpoint kept (model.schedule.Plateau is
the pure decision; the CLI runs here on a small planted log)."""
from __future__ import annotations

import math
import re

import pytest
import torch
from planted import planted_events, write_jsonl

from model.schedule import Plateau
from ops.cli import main

TINY = ["--set", "d=16", "--set", "d_ff=16", "--set", "d_expert=16", "--set", "rel_negatives=64",
        "--batch-size", "64", "--seed", "0"]


# ---------------------------------------------------------------- the pure decision


def test_plateau_cuts_after_lr_patience_and_stops_after_patience():
    p = Plateau(factor=0.5, lr_patience=1, patience=3)
    assert p.update(1, 0.10).improved
    for step, score in ((2, 0.09), (3, 0.095)):  # each stale evaluation cuts
        verdict = p.update(step, score)
        assert verdict.cut_lr and not verdict.stop and not verdict.improved
    verdict = p.update(4, 0.10)  # not above the best: the third stale evaluation stops, without a cut
    assert verdict.stop and not verdict.cut_lr
    assert (p.best, p.best_step) == (0.10, 1)


def test_plateau_counts_afresh_after_an_improvement_and_a_cut():
    p = Plateau(factor=0.1, lr_patience=2, patience=4)
    verdicts = [p.update(step, score) for step, score in enumerate([0.1, 0.05, 0.05, 0.2, 0.1, 0.1, 0.1, 0.1])]
    assert [v.improved for v in verdicts] == [True, False, False, True, False, False, False, False]
    assert [v.cut_lr for v in verdicts] == [False, False, True, False, False, True, False, False]
    assert [v.stop for v in verdicts] == [False] * 7 + [True]
    assert p.best_step == 3


def test_plateau_never_takes_a_non_finite_score_and_checks_its_arguments():
    p = Plateau(patience=2, lr_patience=5)
    assert not p.update(1, math.nan).improved and p.update(2, math.inf).stop and p.best_step is None
    with pytest.raises(ValueError):
        Plateau(factor=0.0)
    with pytest.raises(ValueError):
        Plateau(patience=0)


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "planted.jsonl"
    write_jsonl(path, planted_events(seed=3, n_users=40, n_events=30, n_clusters=8, cluster_size=20))
    return path


@pytest.fixture(scope="module")
def scheduled(events_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "m.pt"
    assert main(["fit", "--events", str(events_file), "--out", str(out), "--epochs", "3", "--eval-every", "2",
                 "--patience", "2", "--lr-patience", "1", "--lr", "3e-3", *TINY, "--batch-size", "128"]) == 0
    return out, torch.load(out, map_location="cpu", weights_only=True)


def test_validation_rows_are_the_latest_of_training_and_never_trained_on(events_file):
    from stream.contract.offline import load_samples, split_heldout, split_validation

    samples, _ = load_samples(events_file)
    train, valid, test = split_validation(samples, 0.1, 0.2)
    ids = [{s.event_id for s in part} for part in (train, valid, test)]
    assert all(ids) and not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == len(samples)
    assert [s.event_id for s in test] == [s.event_id for s in split_heldout(samples, 0.1)[1]]  # eval's set
    assert max(s.ts for s in train) <= min(s.ts for s in valid) and max(s.ts for s in valid) <= min(s.ts for s in test)
    _, valid_u, test_u = split_validation(samples, 0.1, 0.2, per_user=True)
    assert {s.event_id for s in test_u} == {s.event_id for s in split_heldout(samples, 0.1, per_user=True)[1]}
    assert not ({s.event_id for s in valid_u} & {s.event_id for s in test_u})


def test_the_checkpoint_is_the_best_validation_state_and_records_the_schedule(events_file, scheduled, capsys):
    from model.evaluation import evaluable, evaluate_samples, interacted, item_pool
    from model.learner import Learner
    from stream.contract.offline import load_samples, split_validation

    out, state = scheduled
    record = state["fit"]
    history = record["validation_history"]
    assert record["validation"] == 0.1 and history and record["validation_metric"] == "mean NDCG@10 of the tasks"
    best = max(history, key=lambda e: e["score"])
    assert state["step"] == record["best_step"] == best["step"] and record["steps"] >= best["step"]
    assert len(record["losses"]) == record["steps"]
    for before, after in zip(history, history[1:]):  # a cut halves every learning rate of the next entry
        factor = 0.5 if before["lr_cut"] else 1.0
        assert after["lr"] == pytest.approx({k: v * factor for k, v in before["lr"].items()})
    if record["stopped_early"]:
        assert [e["improved"] for e in history[-2:]] == [False, False]
    # the saved learner scores the validation rows as the recorded best evaluation did
    samples, _ = load_samples(events_file)
    train, valid, _ = split_validation(samples, 0.1, 0.1)
    learner = Learner.from_state_dict(state)
    results = evaluate_samples(learner, evaluable(valid), exclude=interacted(train + valid),
                               pool=item_pool(train + valid), seed=0, batch_size=256)
    assert sum(r["NDCG@10"] for r in results.values()) / len(results) == pytest.approx(best["score"], abs=1e-6)
    # eval holds out exactly what fit did: the test slice, untouched by the validation split
    assert main(["eval", "--checkpoint", str(out), "--events", str(events_file)]) == 0
    assert "(the latest 0.1 of all samples in event time)" in capsys.readouterr().out


def test_early_stopping_stops_and_keeps_the_best(events_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    # patience 1: training stops at the first evaluation that is no better than the best
    assert main(["fit", "--events", str(events_file), "--out", str(out), "--epochs", "6", "--eval-every", "1",
                 "--patience", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    total = int(re.search(r"; (\d+) steps of 64 rec", printed).group(1))
    state = torch.load(out, map_location="cpu", weights_only=True)
    record, history = state["fit"], state["fit"]["validation_history"]
    assert record["stopped_early"] and "(stopped early)" in printed
    assert record["steps"] == history[-1]["step"] == len(history) < total
    assert [e["improved"] for e in history] == [True] * (len(history) - 1) + [False]
    assert state["step"] == record["best_step"] == history[-2]["step"]


def test_validation_zero_keeps_the_plain_run(events_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["fit", "--events", str(events_file), "--out", str(out), "--max-steps", "3", "--validation", "0",
                 *TINY]) == 0
    printed = capsys.readouterr().out
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert state["step"] == state["fit"]["steps"] == 3 and state["fit"]["validation"] == 0.0
    assert "validation_history" not in state["fit"] and "no validation" in printed and "validation at" not in printed
    assert main(["fit", "--events", str(events_file), "--out", str(out), "--validation", "1"]) == 2
    assert "--validation: expected a fraction in [0, 1), got 1.0" in capsys.readouterr().err


@pytest.mark.slow  # 20 epochs of `unisar fit`, about 30 s
def test_short_epochs_are_validated_no_more_often_than_every_30_steps(events_file, tmp_path, capsys):
    from ops.commands.fit import MIN_EVAL_STEPS

    out = tmp_path / "m.pt"
    # 64-row batches make a few steps an epoch here: patience counted in such validations would
    # cut the learning rate on the noise of a few steps
    assert main(["fit", "--events", str(events_file), "--out", str(out), "--epochs", "20", "--patience", "99",
                 *TINY]) == 0
    printed = capsys.readouterr().out
    total = int(re.search(r"; (\d+) steps of 64 rec", printed).group(1))
    steps = [e["step"] for e in torch.load(out, map_location="cpu", weights_only=True)["fit"]["validation_history"]]
    assert total // 20 < MIN_EVAL_STEPS <= total  # epochs shorter than the interval, runs longer
    assert steps == [*range(MIN_EVAL_STEPS, total + 1, MIN_EVAL_STEPS), *([total] if total % MIN_EVAL_STEPS else [])]
