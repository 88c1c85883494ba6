"""`unisar produce` and time order, on the real embedded broker: a log written sorted by user
is refused with the count of its late events before anything is sent; `--sort` sends it in
time order, `--keep-order` as it is (and says how many came late)."""
from __future__ import annotations

import orjson
import pytest
from kafkatools import read_all

from ops.cli import main
from ops.processes import settings_env

T = 1_700_000_000_000


def _by_user(n_users=3, n_events=4) -> list[dict]:
    """Users interleaved in time, written user by user: 6 of the 12 events come after a later one."""
    return [{"v": 1, "event_id": f"u{u}e{e}", "user": f"u{u}", "ts": T + 10 * e + u, "type": "rec",
             "item": f"i{e}", "click": 1} for u in range(n_users) for e in range(n_events)]


@pytest.fixture
def one_partition(settings, monkeypatch):
    """The settings in the environment, with one partition so the topic keeps the send order."""
    for key, value in settings_env(settings, partitions=1).items():
        if key.startswith("UNISAR_"):
            monkeypatch.setenv(key, value)
    return settings.model_copy(update={"partitions": 1})


@pytest.mark.integration
def test_produce_refuses_a_file_out_of_time_order_sorts_it_or_keeps_it(one_partition, tmp_path, capsys):
    events = _by_user()
    late = sum(1 for i, e in enumerate(events) if any(p["ts"] > e["ts"] for p in events[:i]))
    assert late == 6
    path = tmp_path / "by-user.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + b"{not json\n")

    assert main(["produce", "--file", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unisar produce: error: --file: expected events in time order, got 6 of 12 events")
    assert "--sort" in err and "--keep-order" in err and len(err.strip().splitlines()) == 1

    assert main(["produce", "--file", str(path), "--no-progress", "--sort"]) == 0
    out = capsys.readouterr().out
    assert "sent 12 events" in out and "1 invalid lines" in out and "sorted by time: 6 events" in out
    sent = [orjson.loads(r.value) for r in read_all(one_partition, one_partition.events_topic)]
    # exactly the 12, in time order: the refused run sent nothing
    assert [e["event_id"] for e in sent] == [e["event_id"] for e in sorted(events, key=lambda e: e["ts"])]

    assert main(["produce", "--file", str(path), "--no-progress", "--keep-order"]) == 0
    assert "sent out of time order: 6 events came after a later one" in capsys.readouterr().out
    sent = [orjson.loads(r.value) for r in read_all(one_partition, one_partition.events_topic)]
    assert [e["event_id"] for e in sent[12:]] == [e["event_id"] for e in events]  # file order


@pytest.mark.integration
def test_produce_sends_a_file_in_time_order_without_a_word(one_partition, tmp_path, capsys):
    events = sorted(_by_user(), key=lambda e: e["ts"])
    path = tmp_path / "ordered.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    assert main(["produce", "--file", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sent 12 events" in out and "time order" not in out
