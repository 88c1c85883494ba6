"""The `unisar` commands, run the way a user runs them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import orjson
import pytest
from eventgen import valid_events

from ops.broker import answers_kafka
from ops.cli import build_parser, main
from ops.commands import COMMANDS
from ops.processes import settings_env
from state.store import RocksHistoryStore
from stream.contract.offline import OfflineStream, heldout_replay


def test_every_command_has_help(capsys):
    names = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert {"broker", "produce", "worker", "inspect", "data", "demo"} <= names <= set(COMMANDS)
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: unisar" in capsys.readouterr().out


def test_inspect_prints_a_users_history_with_raw_ids(tmp_path, capsys):
    events = [e for e in valid_events(400, users=5, seed=3)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    stream = OfflineStream()
    list(stream.feed(orjson.dumps(e) for e in events))
    with RocksHistoryStore(tmp_path / "db") as store:
        store.apply(stream.histories)
    assert main(["inspect", "--user", "u1", "--state-dir", str(tmp_path / "db"), "--events", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("user u1") and " rec " in out and " search " in out
    clicked = {e["item"] for e in events if e["user"] == "u1" and e["type"] == "rec" and e["click"]}
    assert any(item in out for item in clicked)
    assert main(["inspect", "--user", "nobody", "--state-dir", str(tmp_path / "db")]) == 1


def test_inspect_without_a_store_says_what_it_expected(tmp_path, capsys):
    assert main(["inspect", "--user", "u1", "--state-dir", str(tmp_path / "missing")]) == 2
    assert "expected a RocksDB directory" in capsys.readouterr().err


@pytest.mark.integration
def test_produce_sends_valid_lines_and_reports_bad_ones_by_line(settings, tmp_path, capsys, monkeypatch):
    for key, value in settings_env(settings).items():
        if key.startswith("UNISAR_"):  # as the demo passes settings to its children (None left out)
            monkeypatch.setenv(key, value)
    lines = [orjson.dumps(e) for e in valid_events(5, users=2)]
    lines.insert(2, b"{not json")
    lines.insert(4, b'{"v":1,"event_id":"x","user":"u1","ts":1700000000000,"type":"rec","item":"i1","click":7}')
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["produce", "--file", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sent 5 events" in out and "2 invalid lines" in out
    assert "line 3: decode: expected one JSON object per line" in out
    assert "line 5: validate: expected click to be the integer 0 or 1, got 7" in out
    assert main(["produce", "--file", str(path), "--no-progress", "--strict"]) == 1
    assert main(["produce", "--file", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read --file" in capsys.readouterr().err


@pytest.mark.integration
def test_produce_reads_gzip_and_parquet_files(settings, tmp_path, capsys, monkeypatch):
    import gzip
    import importlib.util

    from stream.data.jsonl import write_events

    for key, value in settings_env(settings).items():
        if key.startswith("UNISAR_"):
            monkeypatch.setenv(key, value)
    events = list(valid_events(6, users=2))
    lines = [orjson.dumps(e) for e in events]
    lines.insert(1, b"{not json")
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    assert main(["produce", "--file", str(gz), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sent 6 events" in out and "line 2: decode: expected one JSON object per line" in out
    if importlib.util.find_spec("pyarrow") is not None:
        write_events(events, tmp_path / "events.parquet")
        assert main(["produce", "--file", str(tmp_path / "events.parquet"), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "sent 6 events" in out and "0 invalid lines" in out


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_the_whole_system_writes_its_report_and_cleans_up(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "ops.cli", "demo", "--events", "8000", "--users", "300",
                           "--batch-size", "256", "--no-live", "--out", str(out)],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out.glob("run-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    # the events before the held-out slice (the latest 10% of the samples in event time)
    expected = len(heldout_replay(out / "events.jsonl", 0.1)[0])
    assert 7000 < expected < 7400 and summary["heldout_rule"] == "global-time"
    assert summary["events_replayed"] == expected and summary["events_read"] == expected
    assert summary["samples_trained"] > 0 and summary["model_step"] > 0
    # the offline figures belong to the final model, and say so
    assert summary["offline_eval_step"] == summary["model_step"] and "offline_note" not in summary
    assert summary["quality"]["rec"]["offline"]["HR@10"] is not None
    offline = summary["quality"]["rec"]["offline"]
    assert 0 <= offline["cold_share"] <= 1 and offline["HR@10 warm"] is not None  # cold targets reported apart
    assert summary["catalogue_items"] > 0  # the simulator's catalogue reached the trainer
    assert {"losses.png", "quality_rec.png", "quality_search.png", "throughput.png"} <= set(summary["plots"])
    assert all((run_dir / p).stat().st_size > 10_000 for p in summary["plots"])
    assert "rec/click" in summary["losses"] and "| rec | prequential |" in (run_dir / "summary.md").read_text()
    # nothing left running: the children are gone and the broker's port no longer answers
    for pid in summary["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    host, port = summary["broker"].split(":")
    assert not answers_kafka(host, int(port))


@pytest.mark.integration
def test_demo_takes_a_gzipped_event_file(tmp_path):
    """`demo --dataset FILE.jsonl.gz`: the replay, the worker and the trainer's held-out
    evaluation all read the compressed file (the one event-file reader)."""
    from stream.data.jsonl import write_events
    from stream.data.simulator import SimConfig, generate

    events = tmp_path / "sim.jsonl.gz"
    # enough items that the held-out samples mention 99 negatives for everyone (about 20 s)
    write_events(generate(SimConfig(users=100, items=1000, categories=50, seed=1), 3000), events)
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "ops.cli", "demo", "--dataset", str(events), "--duration", "60",
                           "--batch-size", "128", "--offline-every", "8", "--heldout-last", "0.2", "--no-live",
                           "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out.glob("run-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    replay, heldout, _ = heldout_replay(events, 0.2)
    assert summary["events_file"] == str(events) and summary["invalid_lines"] == 0
    assert summary["events_replayed"] == len(replay) > 2000 and summary["heldout_samples"] == len(heldout) > 0
    assert summary["heldout_last"] == 0.2 and summary["heldout_rule"] == "global-time"
    # the trainer read the held-out samples from the .gz and evaluated on them
    assert summary["offline_eval_step"] > 0 and summary["quality"]["rec"]["offline"]["HR@10"] is not None
