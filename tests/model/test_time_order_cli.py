"""`unisar fit` and `eval` on a log written sorted by user (nothing in time order): both
replay it in time order, so they hold out the latest samples in time, exactly as for the same
events written in time order; `eval --history` refuses a later file with events earlier than
their user's history, with their count."""
from __future__ import annotations

import json

import pytest
from planted import planted_events, write_jsonl

from ops.cli import main

TINY = ["--set", "d=16", "--set", "d_ff=16", "--set", "d_expert=16", "--set", "rel_negatives=64",
        "--batch-size", "128", "--max-steps", "2", "--validation", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("events")
    events = planted_events(seed=5, n_users=30, n_events=20, n_clusters=8, cluster_size=20)
    ordered, by_user = folder / "ordered.jsonl", folder / "by-user.jsonl"
    write_jsonl(ordered, events)
    write_jsonl(by_user, sorted(events, key=lambda e: (e["user"], -e["ts"])))  # each user newest first
    ckpt = folder / "m.pt"
    assert main(["fit", "--events", str(by_user), "--out", str(ckpt), *TINY]) == 0
    return ordered, by_user, ckpt


def test_fit_and_eval_hold_out_the_latest_in_time_whatever_the_file_order(files, tmp_path, capsys):
    ordered, by_user, ckpt = files
    capsys.readouterr()
    reports = []
    for path in (by_user, ordered):
        report = tmp_path / f"{path.stem}.json"
        assert main(["eval", "--checkpoint", str(ckpt), "--events", str(path), "--json", str(report)]) == 0
        reports.append(json.loads(report.read_text())["tasks"])
        said = "replayed in time order: " in capsys.readouterr().out
        assert said == (path == by_user)
    assert reports[0] == reports[1]  # the same held-out rows, histories and candidates

    from model.evaluation import evaluable
    from stream.contract.offline import load_samples, split_heldout

    samples, _ = load_samples(ordered)
    test = evaluable(split_heldout(samples, 0.1)[1])
    assert sum(r["rows"] for r in reports[0].values()) == sum(min(len(s.items), 5) if s.task == "search" else 1
                                                              for s in test)


def test_eval_history_refuses_events_before_their_users_history(files, tmp_path, capsys):
    ordered, _, ckpt = files
    lines = ordered.read_bytes().splitlines(keepends=True)
    cut = len(lines) * 4 // 5
    early, late = tmp_path / "early.jsonl", tmp_path / "late.jsonl"
    early.write_bytes(b"".join(lines[:cut]))
    late.write_bytes(b"".join(lines[cut:]))
    assert main(["eval", "--checkpoint", str(ckpt), "--events", str(late), "--history", str(early)]) == 0
    capsys.readouterr()
    # the other way round: every user's later events become the history of their earlier ones
    assert main(["eval", "--checkpoint", str(ckpt), "--events", str(early), "--history", str(late)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unisar eval: error: --events: expected events no earlier than their user's last event "
                          "in --history, got ") and "unisar data split" in err and len(err.strip().splitlines()) == 1
