from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.data import split, stats
from stream.data.jsonl import write_events, write_items

DAY = 86_400_000
T = 1_700_006_400_000  # 2023-11-15 00:00 UTC


def rec(user, item, ts, click=1, n=[0]):
    n[0] += 1
    return {"v": 1, "event_id": f"e{n[0]}", "user": user, "ts": ts, "type": "rec", "item": item, "click": click}


def search(user, query, clicks, ts, n=[0]):
    n[0] += 1
    return {"v": 1, "event_id": f"s{n[0]}", "user": user, "ts": ts, "type": "search", "query": query, "clicks": clicks}


def test_stats_transitions_and_same_category():
    categories = {"a1": "A", "a2": "A", "b1": "B", "7": "B"}
    events = [
        rec("u1", "a1", T),                # first behaviour
        rec("u1", "b1", T + 1, click=0),   # exposure: not a behaviour
        rec("u1", "a2", T + 2),            # r2r same (A, A)
        search("u1", "x y", ["b1"], T + 3),  # r2s different
        search("u1", [4], [], T + 4),      # s2s, no category: not in the rate
        search("u1", "X  Y", [7], T + 5),  # s2s: previous has no click -> not in the rate; same query as before
        rec("u1", "b1", T + 6),            # s2r same (B, B), 7 and "7" are one item
        rec("u2", "zz", T + 7),            # unknown category
        rec("u2", "a1", T + 8),            # r2r, previous without category
    ]
    result = stats.compute(events, categories)
    assert result["transitions"] == {"r2r": 2, "r2s": 1, "s2r": 1, "s2s": 2}
    assert result["same_category"] == {"r2r": 1.0, "r2s": 0.0, "s2r": 1.0, "s2s": None}
    assert result["same_category_pairs"] == {"r2r": 1, "r2s": 1, "s2r": 1, "s2s": 0}
    assert (result["users"], result["items"], result["queries"]) == (2, 5, 2)
    assert (result["rec_click"], result["rec_exposure"], result["search_with_clicks"],
            result["search_without_clicks"]) == (5, 1, 2, 1)
    assert result["rec_clicks_per_search"] == pytest.approx(5 / 3)
    assert result["search_click_share"] == pytest.approx(2 / 3)
    # clicks: a1 2, a2 1, b1 2 (one search, one rec), 7 1, zz 1; the exposure is no click
    assert (result["clicked_items"], result["clicked_items_under_core"], result["clicks_per_item_median"]) == (5, 5, 1)
    more = stats.compute(events + [rec("u3", "a1", T + 9 + i) for i in range(3)], categories)
    assert (more["clicked_items_under_core"], more["clicks_per_item_median"]) == (4, 1)  # a1 has 5 now
    assert "4 of 5 clicked items (80.0%) have fewer than 5" in stats.format_report(more)


def test_stats_cli_counts_invalid_lines(tmp_path, run_cli):
    path = tmp_path / "e.jsonl"
    write_events([rec("u1", "a1", T), rec("u1", "b1", T + 1)], path)
    write_items(tmp_path / "e.items.jsonl", [{"v": 1, "item": "a1", "categories": ["A", "x"]},
                                             {"v": 1, "item": "b1", "categories": ["A", "y"]}])
    with open(path, "ab") as fh:
        fh.write(b'{"v":1,"event_id":"x","user":"u1","ts":5,"type":"rec","item":"i","click":1}\nnot json\n')
    code, stdout, _ = run_cli("data", "stats", str(path))
    assert code == 1
    assert "invalid events        2" in stdout
    assert "line 3: validate: expected ts" in stdout and "line 4: decode" in stdout
    assert "same category r2r     100.0%" in stdout
    assert f"item catalogue        {tmp_path / 'e.items.jsonl'}" in stdout
    for flag in ("--items", "--categories"):  # --categories: the old name
        code, stdout, _ = run_cli("data", "stats", str(path), "--json", flag, str(tmp_path / "e.items.jsonl"))
        result = orjson.loads(stdout)
        assert result["transitions"]["r2r"] == 1 and result["invalid"] == 2
        assert result["same_category"]["r2r"] == 1.0 and result["catalogue"] == str(tmp_path / "e.items.jsonl")


def test_stats_compares_level_1_of_the_catalogue(tmp_path, run_cli):
    catalogue = tmp_path / "c.items.jsonl"
    write_items(catalogue, [{"v": 1, "item": 7, "categories": ["A", "x"]}, {"v": 1, "item": "b", "categories": ["A"]},
                            {"v": 1, "item": "c", "categories": [None, "x"]}, {"v": 1, "item": "d", "caption": "t"},
                            {"v": 1, "item": "e", "categories": ["B"]}, {"v": 1, "item": "e"}])  # e: later wins
    assert stats.level1_categories(catalogue) == {"7": "A", "b": "A"}
    path = tmp_path / "e.jsonl"
    write_events([rec("u1", "b", T), rec("u1", "7", T + 1), rec("u1", "c", T + 2)], path)
    code, stdout, _ = run_cli("data", "stats", str(path), "--json", "--items", str(catalogue))
    assert code == 0 and orjson.loads(stdout)["same_category_pairs"]["r2r"] == 1
    code, _, stderr = run_cli("data", "stats", str(path), "--items", str(tmp_path / "e.categories.csv"))
    assert code == 2 and "expected an item catalogue (X.items.jsonl)" in stderr


def _events(n_users=5, days=4):
    out = []
    for day in range(days):
        for hour in range(0, 24, 6):
            for u in range(n_users):
                ts = T + day * DAY + hour * 3_600_000 + u
                out.append(rec(f"u{u}", f"i{hour}", ts, click=int(hour != 12)) if hour != 18
                           else search(f"u{u}", "q", [f"i{day}"], ts))
    return out


def _read(path):
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def test_split_by_days_cli_is_reproducible(tmp_path, run_cli):
    path = tmp_path / "e.jsonl"
    write_events(_events(), path)
    code, stdout, stderr = run_cli("data", "split", str(path), "--by", "days")
    assert code == 0, stderr
    train, valid, test = (_read(tmp_path / f"e.{n}.jsonl") for n in split.SPLITS)
    assert {(e["ts"] - T) // DAY for e in test} == {3} and {(e["ts"] - T) // DAY for e in valid} == {2}
    assert max(e["ts"] for e in train) < min(e["ts"] for e in valid)
    first = [(tmp_path / f"e.{n}.jsonl").read_bytes() for n in split.SPLITS]
    run_cli("data", "split", str(path), "--by", "days")
    assert first == [(tmp_path / f"e.{n}.jsonl").read_bytes() for n in split.SPLITS]
    manifest = orjson.loads((tmp_path / "e.split.json").read_bytes())
    assert manifest["test_from"] == T + 3 * DAY and manifest["counts"]["test"] == len(test)


def test_split_by_fraction_and_time(tmp_path, run_cli):
    path = tmp_path / "e.jsonl"
    events = _events()
    write_events(events, path)
    code, _, _ = run_cli("data", "split", str(path), "--by", "fraction", "--valid", "0.25", "--test", "0.25",
                         "--out", str(tmp_path / "f"))
    assert code == 0
    counts = [len(_read(tmp_path / f"f.{n}.jsonl")) for n in split.SPLITS]
    assert counts == [40, 20, 20]
    code, _, stderr = run_cli("data", "split", str(path), "--by", "time", "--valid-from", "2023-11-16",
                              "--test-from", str(T + 3 * DAY), "--out", str(tmp_path / "t"))
    assert code == 0, stderr
    assert [len(_read(tmp_path / f"t.{n}.jsonl")) for n in split.SPLITS] == [20, 40, 20]


def test_split_per_user_last_n(tmp_path, run_cli):
    path = tmp_path / "e.jsonl"
    events = _events(n_users=3, days=2) + [rec("solo", "i1", T + 9 * DAY)]
    events.sort(key=lambda e: e["ts"])
    write_events(events, path)
    code, _, _ = run_cli("data", "split", str(path), "--by", "user", "--valid-n", "1", "--test-n", "2")
    assert code == 0
    train, valid, test = (_read(tmp_path / f"e.{n}.jsonl") for n in split.SPLITS)
    for user in ("u0", "u1", "u2"):
        behaviours = [e for e in events if e["user"] == user and (e["type"] == "search" or e["click"])]
        assert [e for e in test if e["user"] == user and (e["type"] == "search" or e["click"])] == behaviours[-2:]
        assert [e for e in valid if e["user"] == user] == [behaviours[-3]]
        assert max(e["ts"] for e in train if e["user"] == user) < behaviours[-3]["ts"]
    assert [e["user"] for e in train if e["user"] == "solo"] == ["solo"]  # too few behaviours: training
    assert len(train) + len(valid) + len(test) == len(events)


def test_split_writes_every_output_in_time_order_from_a_log_sorted_by_user(tmp_path, run_cli):
    """A log written sorted by user, each user's events newest first: the outputs are in time
    order, the test slice is the latest in time, and the per-user rule counts in time."""
    events = _events()
    by_user = sorted(events, key=lambda e: (e["user"], -e["ts"]))
    path = tmp_path / "by-user.jsonl"
    write_events(by_user, path)
    code, stdout, stderr = run_cli("data", "split", str(path), "--by", "fraction", "--valid", "0.25", "--test",
                                   "0.25", "--out", str(tmp_path / "f"))
    assert code == 0, stderr
    train, valid, test = (_read(tmp_path / f"f.{n}.jsonl") for n in split.SPLITS)
    for part in (train, valid, test):
        assert [e["ts"] for e in part] == sorted(e["ts"] for e in part) and part
    ordered = sorted(events, key=lambda e: e["ts"])
    assert test == ordered[-20:] and valid == ordered[-40:-20] and train == ordered[:-40]
    late = sum(1 for i, e in enumerate(by_user) if any(p["ts"] > e["ts"] for p in by_user[:i]))
    assert f"sorted by time: {late:,} events" in stdout
    assert orjson.loads((tmp_path / "f.split.json").read_bytes())["out_of_order"] == late
    # the same events in time order give the same files
    write_events(ordered, tmp_path / "ordered.jsonl")
    assert run_cli("data", "split", str(tmp_path / "ordered.jsonl"), "--by", "fraction", "--valid", "0.25",
                   "--test", "0.25", "--out", str(tmp_path / "g"))[0] == 0
    for n in split.SPLITS:
        assert (tmp_path / f"g.{n}.jsonl").read_bytes() == (tmp_path / f"f.{n}.jsonl").read_bytes()
    # per user: each user's last behaviours in time, not the last lines of the file
    assert run_cli("data", "split", str(path), "--by", "user", "--out", str(tmp_path / "u"))[0] == 0
    test = _read(tmp_path / "u.test.jsonl")
    for user in {e["user"] for e in events}:
        behaviours = [e for e in ordered if e["user"] == user and (e["type"] == "search" or e["click"])]
        assert [e for e in test if e["user"] == user and (e["type"] == "search" or e["click"])] == behaviours[-1:]


def test_time_cuts():
    # T + 3 days is 08:00 in Beijing: its day began 8 hours earlier
    cuts = split.TimeCuts.by_days(T + 3 * DAY + 5, tz_hours=8)
    assert (cuts.valid_from, cuts.test_from) == (T + 2 * DAY - 8 * 3_600_000, T + 3 * DAY - 8 * 3_600_000)
    cuts = split.TimeCuts.by_days(T + 3 * DAY + 5, valid_days=2, test_days=2)
    assert (cuts.valid_from, cuts.test_from) == (T, T + 2 * DAY)
    ts = np.arange(100)
    cuts = split.TimeCuts.by_fractions(ts, 0.1, 0.2)
    assert (cuts.valid_from, cuts.test_from) == (70, 80)
    with pytest.raises(ValueError):
        split.TimeCuts(5, 4)


@pytest.mark.parametrize("command", ["kuaisar", "movielens", "simulate", "convert", "core", "split", "stats"])
def test_every_data_command_has_help(run_cli, capsys, command):
    with pytest.raises(SystemExit) as info:
        run_cli("data", command, "--help")
    assert info.value.code == 0
    assert f"unisar data {command}" in capsys.readouterr().out
