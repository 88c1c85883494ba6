"""k-core filtering of event files (`unisar data core`)."""
from __future__ import annotations

import pytest

from stream.contract.files import read_events
from stream.data.core import k_core, kept_records
from stream.data.jsonl import read_catalogue, write_events, write_items

T = 1_700_006_400_000


def rec(user, item, ts, click=1):
    return {"v": 1, "event_id": f"r{ts}", "user": user, "ts": T + ts, "type": "rec", "item": item, "click": click}


def search(user, clicks, ts):
    return {"v": 1, "event_id": f"s{ts}", "user": user, "ts": T + ts, "type": "search", "query": "q", "clicks": clicks}


# at k = 2 dropping cascades over three rounds:
#   1: u2 (1 behaviour), items b and e (1 click each) go
#   2: u3 is down to 1 behaviour (rec d); it goes
#   3: d is down to 1 click (u1's search); it goes, and u1's search loses it
EVENTS = [
    rec("u1", "a", 1), rec("u1", "b", 2), search("u1", ["a", "d"], 3),
    rec("u2", "a", 4), rec("u2", "x", 5, click=0),
    rec("u3", "d", 6), rec("u3", "e", 7),
]


def test_k_core_cascades_to_a_fixed_point():
    result = k_core(EVENTS, 2)
    assert [e["event_id"] for e in result.events] == ["r1", "s3"]
    assert result.events[1]["clicks"] == ["a"] and EVENTS[2]["clicks"] == ["a", "d"]  # the input is not changed
    assert (result.rounds, result.users, result.items, result.dropped_events, result.dropped_clicks) == (3, 1, 1, 5, 1)
    again = k_core(result.events, 2)
    assert again.events == result.events and again.rounds == 0  # a k-core is its own k-core


def test_both_behaviours_without_counts_and_nothing_to_filter():
    result = k_core(EVENTS, 1, both_behaviours=True)
    assert [e["event_id"] for e in result.events] == ["r1", "r2", "s3"]  # only u1 has both; items are not filtered
    with pytest.raises(ValueError, match="nothing to filter"):
        k_core(EVENTS, 1)


def test_core_cli_writes_events_and_the_kept_items_catalogue(tmp_path, run_cli):
    source = tmp_path / "e.jsonl"
    write_events(EVENTS, source)
    records = [{"v": 1, "item": i, "categories": ["C" + i, None], "caption": f"{i} words"} for i in "abdex"]
    profiles = [{"v": 1, "user": u, "profile": {"age": "20s"}} for u in ("u1", "u2")]
    write_items(tmp_path / "e.items.jsonl", records + profiles)
    out = tmp_path / "core.jsonl"
    code, stdout, _ = run_cli("data", "core", str(source), "--min-core", "2", "--out", str(out))
    assert code == 0
    assert "5 dropped, 1 search clicks removed; 1 users and 1 items kept after 3 rounds" in stdout
    assert [obj["event_id"] for _line, obj, _e in read_events(out)] == ["r1", "s3"]
    assert [obj for _line, obj, _record in read_catalogue(tmp_path / "core.items.jsonl")] == [records[0], profiles[0]]
    assert "wrote 2 catalogue records" in stdout


def test_core_cli_refuses_a_bad_catalogue(tmp_path, run_cli):
    source = tmp_path / "e.jsonl"
    write_events(EVENTS, source)
    (tmp_path / "e.items.jsonl").write_text('{"v": 1, "item": "a"}\n{"v": 1, "item": "b", "categories": "C"}\n')
    code, _, stderr = run_cli("data", "core", str(source), "--min-core", "2", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and f"{tmp_path / 'e.items.jsonl'}:2: expected a catalogue v1 record (categories to be" in stderr
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.items.jsonl").exists()


def test_kept_records_follow_the_kept_items_and_users():
    records = [{"v": 1, "item": 7}, {"v": 1, "item": "a"}, {"v": 1, "user": 7}, {"v": 1, "item": "b"},
               {"v": 1, "user": "u"}]
    kept = kept_records(records, frozenset({"7", "b"}), frozenset({"u"}))
    assert list(kept) == [records[0], records[3], records[4]]  # 7 and "7": one item; user 7 is not item 7


def test_core_cli_errors_say_what_was_expected(tmp_path, run_cli):
    source = tmp_path / "e.jsonl"
    write_events(EVENTS, source)
    code, _, stderr = run_cli("data", "core", str(source), "--min-core", "1", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "expected --min-core >= 2 or --both-behaviours, got --min-core 1" in stderr
    with open(source, "ab") as fh:
        fh.write(b'{"v": 1, "user": "u9"}\n')
    code, _, stderr = run_cli("data", "core", str(source), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and f"{source}:8: expected an event v1" in stderr
    assert not (tmp_path / "o.jsonl").exists()
