"""`unisar fit` and `unisar eval` the way a user runs them, on a planted event log."""
import json

import pytest
from planted import planted_events, write_jsonl

from ops.cli import main

SLOW = pytest.mark.slow  # reads `checkpoint`: a 40 s fit, once per module (`make check` leaves these out)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "planted.jsonl"
    write_jsonl(path, planted_events(seed=0, n_users=80, n_events=40, n_clusters=8, cluster_size=20))
    return path


@pytest.fixture(scope="module")
def checkpoint(events_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "unisar.pt"
    # a small dataset: d=32, small batches and a higher learning rate so 8 epochs (about 200 steps) learn
    # it from the default init. It needs every training row: no validation here (the schedule's own
    # tests: test_fit_schedule.py)
    code = main(["fit", "--events", str(events_file), "--out", str(out), "--epochs", "8", "--batch-size", "64",
                 "--lr", "1e-2", "--seed", "0", "--set", "d=32", "--set", "rel_negatives=256", "--validation", "0"])
    assert code == 0 and out.exists()
    return out


@SLOW
def test_fit_then_eval_learns_the_planted_transitions(events_file, checkpoint, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--events", str(events_file), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "sampled ranking" in printed and "HR@10" in printed
    results = json.loads(report.read_text())
    assert results["protocol"] == "sampled-99" and results["heldout_last"] == 0.1
    assert results["heldout_rule"] == "global-time" and "of all samples in event time" in printed
    for task in ("rec", "search"):
        assert results["tasks"][task]["rows"] > 50
        assert results["tasks"][task]["HR@10"] > 0.2, results["tasks"]  # random: 0.10


@SLOW
def test_full_ranking_is_reported_as_such(events_file, checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "--events", str(events_file), "--full-ranking"]) == 0
    assert "full ranking" in capsys.readouterr().out


@SLOW
def test_bad_inputs_get_a_message_and_a_non_zero_exit(events_file, checkpoint, tmp_path, capsys):
    missing = str(tmp_path / "nope.jsonl")
    assert main(["fit", "--events", missing, "--out", str(tmp_path / "x.pt")]) == 2
    assert "--events: " in (err := capsys.readouterr().err) and "expected a readable event file" in err
    assert main(["fit", "--events", str(events_file), "--out", "x.pt", "--set", "colour=red"]) == 2
    assert "expected FIELD=VALUE" in capsys.readouterr().err
    assert main(["fit", "--events", str(events_file), "--out", "x.pt", "--set", "use_mask=maybe"]) == 2
    assert "expected true or false" in capsys.readouterr().err
    assert main(["fit", "--events", str(events_file), "--out", "x.pt", "--negatives", "0"]) == 2
    assert "--negatives: expected at least 1, got 0" in capsys.readouterr().err
    assert main(["fit", "--events", str(events_file), "--out", str(tmp_path / "x.pt"), "--table-lr", "-1"]) == 2
    assert "expected learning rates > 0" in capsys.readouterr().err
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"v": 2}\nnot json\n')
    assert main(["fit", "--events", str(junk), "--out", str(tmp_path / "x.pt")]) == 2
    assert "expected events that yield training samples" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(events_file), "--events", str(events_file)]) == 2
    assert "expected a checkpoint written by `unisar fit`" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint), "--events", str(events_file), "--heldout-last", "0"]) == 2
    assert "--heldout-last: expected a fraction in (0, 1], got 0.0" in capsys.readouterr().err


def test_fit_reads_a_gzipped_event_file_and_records_the_per_user_rule(events_file, tmp_path, capsys):
    import gzip

    import torch

    gz = tmp_path / "planted.jsonl.gz"
    gz.write_bytes(gzip.compress(events_file.read_bytes()))
    out = tmp_path / "m.pt"
    assert main(["fit", "--events", str(gz), "--out", str(out), "--max-steps", "2", "--batch-size", "256",
                 "--set", "d=16", "--set", "rel_negatives=64", "--heldout-per-user"]) == 0
    captured = capsys.readouterr()
    assert "skipped" not in captured.err  # every line of the .gz is an event
    assert "held out: the latest 0.1 of each user's samples (per-user rule)" in captured.out
    record = torch.load(out, map_location="cpu", weights_only=True)["fit"]
    assert record["heldout_last"] == 0.1 and record["heldout_rule"] == "per-user"
    # eval takes the rule from the checkpoint, and another when told
    assert main(["eval", "--checkpoint", str(out), "--events", str(gz)]) == 0
    assert "(the latest 0.1 of each user's samples (per-user rule))" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out), "--events", str(gz), "--no-heldout-per-user",
                 "--heldout-last", "0.2"]) == 0
    assert "(the latest 0.2 of all samples in event time)" in capsys.readouterr().out


def test_the_old_holdout_flag_still_works_with_a_one_line_warning(events_file, tmp_path, capsys):
    import torch

    out = tmp_path / "m.pt"
    assert main(["fit", "--events", str(events_file), "--out", str(out), "--max-steps", "1", "--batch-size", "256",
                 "--set", "d=16", "--set", "rel_negatives=64", "--holdout-last", "0.2"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert warnings == ["unisar fit: warning: --holdout-last is deprecated and will be removed in the next release; "
                        "use --heldout-last (now the latest F of all samples in event time; add --heldout-per-user "
                        "for the per-user rule)"]
    record = torch.load(out, map_location="cpu", weights_only=True)["fit"]
    assert record["heldout_last"] == 0.2 and record["heldout_rule"] == "global-time"
    assert main(["eval", "--checkpoint", str(out), "--events", str(events_file), "--holdout-last", "0.3"]) == 0
    captured = capsys.readouterr()
    assert "unisar eval: warning: --holdout-last is deprecated" in captured.err
    assert "(the latest 0.3 of all samples in event time)" in captured.out


@SLOW
def test_fit_keeps_its_loss_history_and_plots_it_beside_the_checkpoint(checkpoint):
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    losses = state["fit"]["losses"]
    assert len(losses) == state["fit"]["steps"] >= state["step"] and all("total" in terms for terms in losses)
    plot = checkpoint.with_suffix(".losses.png")
    assert plot.exists() and plot.stat().st_size > 10_000


@SLOW
def test_eval_scores_a_later_file_with_the_history_of_an_earlier_one(events_file, checkpoint, tmp_path):
    """A time split kept as two files: --history replays the first as history, unscored, and
    every sample of the second is scored with each user's whole history."""
    from stream.contract.offline import OfflineStream, load_samples

    lines = events_file.read_bytes().splitlines(keepends=True)
    cut = len(lines) * 4 // 5
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_bytes(b"".join(lines[:cut]))
    test.write_bytes(b"".join(lines[cut:]))
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--events", str(test), "--history", str(train),
                 "--json", str(report)]) == 0
    results = json.loads(report.read_text())["tasks"]

    alone, _ = load_samples(test)  # without the history: short histories
    stream = OfflineStream()
    load_samples(train, stream=stream)
    joined, _ = load_samples(test, stream=stream)
    assert len(joined) == len(alone)  # the same samples, none skipped as a redelivery
    assert sum(len(s.history.rec) for s in joined) > sum(len(s.history.rec) for s in alone)
    rows = sum(1 for s in joined if (s.task == "rec" and s.label == 1)) + sum(
        min(len(s.items), 5) for s in joined if s.task == "search")
    assert sum(r["rows"] for r in results.values()) == rows  # every sample of the later file scored
    assert results["rec"]["HR@10"] > 0.2
