from __future__ import annotations

import numpy as np
import orjson
import pytest
from data_helpers import DAY0, DAY_MS, REC_HEADER, SRC_HEADER, rec_row, src_row, write_csv, write_kuaisar

from stream.contract.events import Event, Rejection, validate
from stream.contract.files import read_items
from stream.contract.ids import item_id, user_id, word_id
from stream.contract.items import ItemRecord, ProfileRecord, category_token, profile_token
from stream.data import DataError, kuaisar

H = 3_600_000


@pytest.fixture
def small(tmp_path):
    rec = [
        rec_row(1, 10, DAY0 + H),
        rec_row(1, 11, DAY0 + 2 * H, click=0),
        rec_row(2, 10, f"{DAY0 + 3 * H}.0"),  # KuaiSAR writes float64 timestamps
        rec_row(1, 10, DAY0 + DAY_MS + H),
        rec_row(3, 12, "1.6848576e+12"),  # DAY0 + 2 days, in scientific notation
    ]
    src = [  # rows of session 7 interleaved with session 8
        src_row(1, 7, DAY0 + 90 * 60_000, "[20, 34, 3]", 100, 1),
        src_row(1, 7, DAY0 + 90 * 60_000, "[20, 34, 3]", 101, 0),
        src_row(2, 8, DAY0 + 4 * H, "[5]", 103, 0),
        src_row(1, 7, DAY0 + 90 * 60_000, "[20, 34, 3]", 100, 1),  # duplicate click
        src_row(1, 7, DAY0 + 90 * 60_000, "[20, 34, 3]", 102, 2),
    ]
    items = [[10, "[1, 2]", 5, 1, 11], [11, "[3]", 5, 2, 21], [12, "[]", 6, 1, 12], [100, "[4]", 7, 3, 31],
             [102, "[4, 5]", 7, 3, 32], [999, "[9]", 8, 9, 99]]
    return write_kuaisar(tmp_path / "kuaisar", rec, src, items)


def test_load_groups_sessions_and_orders_by_time(small):
    data = kuaisar.load(small)
    events = list(kuaisar.events(data))
    assert [(e["type"], e["user"], e["ts"] - DAY0) for e in events] == [
        ("rec", 1, H), ("search", 1, 90 * 60_000), ("rec", 1, 2 * H), ("rec", 2, 3 * H),
        ("search", 2, 4 * H), ("rec", 1, DAY_MS + H), ("rec", 3, 2 * DAY_MS),
    ]
    search = events[1]
    assert search["query"] == [20, 34, 3]
    assert search["clicks"] == [100, 102]  # click_cnt > 0, duplicates once, first-seen order
    assert events[4]["clicks"] == []  # a session without clicks is still a search
    assert events[2]["click"] == 0 and events[0]["click"] == 1
    assert len({e["event_id"] for e in events}) == len(events)
    for e in events:
        assert isinstance(validate(e), Event)
    assert data.sizes() == {"users": 3, "items": 5, "rec_events": 5, "rec_clicks": 4, "searches": 2,
                            "search_clicks": 2}


def test_cli_writes_events_and_the_item_catalogue(small, tmp_path, run_cli):
    out = tmp_path / "out" / "k.jsonl"
    out.parent.mkdir()  # --out goes into an existing folder (a missing one is refused, not created)
    code, stdout, stderr = run_cli("data", "kuaisar", str(small), "--out", str(out))
    assert code == 0, stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 7 and all(isinstance(validate(orjson.loads(x)), Event) for x in lines)
    records = [orjson.loads(x) for x in (tmp_path / "out" / "k.items.jsonl").read_bytes().splitlines()]
    assert records == [  # only items in events (not 999), in file order; "[]" is no caption
        {"v": 1, "item": 10, "categories": [1, 11], "caption": [1, 2]},
        {"v": 1, "item": 11, "categories": [2, 21], "caption": [3]},
        {"v": 1, "item": 12, "categories": [1, 12]},
        {"v": 1, "item": 100, "categories": [3, 31], "caption": [4]},
        {"v": 1, "item": 102, "categories": [3, 32], "caption": [4, 5]},
    ]
    read = {record.item: record for _line, record in read_items(tmp_path / "out" / "k.items.jsonl")}
    assert "no user_features.csv" in stdout and "wrote 5 item records and 0 user profiles" in stdout
    assert not any(isinstance(r, Rejection) for r in read.values())
    assert read[item_id(10)].words == (word_id(1), word_id(2))  # caption words are query words
    assert read[item_id(10)].categories == (category_token(1, 1), category_token(2, 11))
    assert "wrote 7 events" in stdout and "wrote 5 item records" in stdout


def test_catalogue_levels_unknowns_and_long_captions(tmp_path):
    header = ["item_id", "caption", "first_level_category_id", "second_level_category_id",
              "third_level_category_id", "fourth_level_category_id", "first_level_category_name"]
    rows = [[1, "[7, 8]", 9, 136, 0, 0, "Funny"],  # 0: the release's "empty" category
            [2, "", 5.0, -1, "", 44, "x"],          # "5.0": pandas' float column; an unknown level in between
            [3, str(list(range(1, 41))), -1, -1, -1, -1, "x"],
            [4, "[]", "", "", "", "", "x"],
            [1, "[99]", 1, 1, 1, 1, "x"]]           # a second row of item 1: the first wins
    path = write_csv(tmp_path / "item_features.csv", header, rows)
    records = list(kuaisar.catalogue(path, np.array([1, 2, 3, 4, 5])))
    assert records == [
        {"v": 1, "item": 1, "categories": [9, 136], "caption": [7, 8]},
        {"v": 1, "item": 2, "categories": [5, None, None, 44]},
        {"v": 1, "item": 3, "caption": list(range(1, 33))},  # cut to 32 words, as queries are
        {"v": 1, "item": 4},  # listed, with nothing known
    ]
    write_csv(path, ["item_id", "second_level_category_id"], [[1, 7]])  # no caption, no first level
    assert list(kuaisar.catalogue(path, np.array([1]))) == [{"v": 1, "item": 1, "categories": [None, 7]}]
    write_csv(path, ["item_id", "first_level_category_id"], [[1, "funny"]])
    with pytest.raises(DataError, match="item_features.csv:2: expected column first_level_category_id to be an "
                                        "integer, got 'funny'"):
        list(kuaisar.catalogue(path, np.array([1])))


USER_HEADER = ["user_id", "search_active_level", "rec_active_level", "onehot_feat0", "onehot_feat1", "onehot_feat2"]


def test_profiles_take_the_reference_columns_and_skip_unknown_cells(tmp_path):
    rows = [[1, 3, 2, 7, 5, "1.0"],   # "1.0": pandas' float column
            [2, "", 4, 7, "", ""],   # empty cells: unknown fields
            [9, 1, 1, 1, 1, 1],      # a user without events
            [1, 9, 9, 9, 9, 9]]      # a second row of user 1: the first wins
    path = write_csv(tmp_path / "user_features.csv", USER_HEADER, rows)
    assert list(kuaisar.profiles(path, np.array([1, 2, 3]))) == [
        {"v": 1, "user": 1, "profile": {"search_active_level": 3, "rec_active_level": 2, "onehot_feat1": 5,
                                        "onehot_feat2": 1}},  # onehot_feat0: not a reference field
        {"v": 1, "user": 2, "profile": {"rec_active_level": 4}},
    ]
    write_csv(path, ["user_id", "rec_active_level"], [[1, "high"]])  # missing columns, text values
    assert list(kuaisar.profiles(path, np.array([1]))) == [{"v": 1, "user": 1, "profile": {"rec_active_level": "high"}}]


def test_cli_writes_profiles_after_the_items(small, tmp_path, run_cli):
    write_csv(small / "user_features.csv", USER_HEADER, [[1, 3, 2, 0, 5, 1], [3, 1, 1, 0, 2, 0], [77, 1, 1, 1, 1, 1]])
    out = tmp_path / "k.jsonl"
    code, stdout, stderr = run_cli("data", "kuaisar", str(small), "--out", str(out))
    assert code == 0, stderr
    assert "wrote 5 item records and 2 user profiles" in stdout
    records = [record for _line, record in read_items(tmp_path / "k.items.jsonl")]
    assert [type(r) for r in records] == [ItemRecord] * 5 + [ProfileRecord] * 2
    assert records[-1] == ProfileRecord(user_id(3), (profile_token("onehot_feat1", 2), profile_token("onehot_feat2", 0),
                                                     profile_token("rec_active_level", 1),
                                                     profile_token("search_active_level", 1)))
    (small / "item_features.csv").unlink()  # profiles alone still make a catalogue
    code, stdout, _ = run_cli("data", "kuaisar", str(small), "--out", str(out))
    assert code == 0 and "no item_features.csv" in stdout and "wrote 0 item records and 2 user profiles" in stdout


def test_rec_clicks_only(small, tmp_path, run_cli):
    out = tmp_path / "k.jsonl"
    code, _, stderr = run_cli("data", "kuaisar", str(small), "--out", str(out), "--rec-clicks-only")
    assert code == 0, stderr
    events = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert all(e["click"] == 1 for e in events if e["type"] == "rec")
    assert len(events) == 6
    assert [r["item"] for r in map(orjson.loads, (tmp_path / "k.items.jsonl").read_bytes().splitlines())] \
        == [10, 12, 100, 102]  # item 11 was only ever exposed


def test_no_item_features_no_catalogue(tmp_path, run_cli):
    directory = write_kuaisar(tmp_path / "d", [rec_row(1, 10, DAY0)], [src_row(1, 1, DAY0 + 1, "[1]", 10, 1)])
    code, stdout, _ = run_cli("data", "kuaisar", str(directory), "--out", str(tmp_path / "k.jsonl"))
    assert code == 0 and "no item_features.csv" in stdout and not (tmp_path / "k.items.jsonl").exists()


def test_both_behaviours_drops_users_without_searches(small):
    data = kuaisar.preprocess(kuaisar.load(small), kuaisar.Options(both_behaviours=True))
    assert sorted(set(data.rec_user.tolist()) | set(data.s_user.tolist())) == [1, 2]


def test_k_core_iterates_to_a_fixed_point(tmp_path):
    a, b, c = 1, 2, 3
    rec = [rec_row(1, a, DAY0 + 1), rec_row(1, a, DAY0 + 2), rec_row(1, b, DAY0 + 3),
           rec_row(2, b, DAY0 + 4), rec_row(2, c, DAY0 + 5), rec_row(3, c, DAY0 + 6),
           rec_row(1, c, DAY0 + 7, click=0)]
    src = [src_row(1, 1, DAY0 + 8, "[1]", a, 1), src_row(1, 1, DAY0 + 8, "[1]", b, 0)]
    data = kuaisar.preprocess(kuaisar.load(write_kuaisar(tmp_path, rec, src)), kuaisar.Options(min_core=2))
    # u3 goes (1 behaviour) -> item c has 1 click -> u2 has 1 behaviour -> item b has 1 click
    assert data.rec_user.tolist() == [1, 1] and data.rec_item.tolist() == [a, a]
    assert data.s_user.tolist() == [1] and data.c_item.tolist() == [a]


def test_drop_last_days_and_day_split(tmp_path, run_cli):
    rec = [rec_row(1, 10 + day, DAY0 + day * DAY_MS + H) for day in range(4)]
    rec += [rec_row(2, 20 + day, DAY0 + day * DAY_MS + 23 * H) for day in range(4)]  # 23:00 Beijing
    src = [src_row(1, day, DAY0 + day * DAY_MS + 2 * H, "[1, 2]", 10 + day, 1) for day in range(4)]
    directory = write_kuaisar(tmp_path / "d", rec, src)
    out = tmp_path / "k.jsonl"
    code, stdout, stderr = run_cli("data", "kuaisar", str(directory), "--out", str(out), "--drop-last-days", "1",
                                   "--split")
    assert code == 0, stderr

    def days(name):
        lines = (tmp_path / f"k.{name}.jsonl").read_bytes().splitlines()
        return sorted({(orjson.loads(x)["ts"] - DAY0) // DAY_MS for x in lines})

    assert days("train") == [0] and days("valid") == [1] and days("test") == [2]  # day 3 dropped
    manifest = orjson.loads((tmp_path / "k.split.json").read_bytes())
    assert manifest["test_from"] == DAY0 + 2 * DAY_MS and manifest["counts"] == {"train": 3, "valid": 3, "test": 3}
    assert "split by day: train 3  valid 3  test 3" in stdout


def test_search_item_types_filter(small):
    data = kuaisar.load(small, kuaisar.Options(search_item_types=frozenset({"LIVE"})))
    assert data.c_item.size == 0 and data.s_user.size == 2


# ---------------------------------------------------------------- malformed input


def _dir_with(tmp_path, rec_header=REC_HEADER, rec=None, src=None):
    directory = tmp_path / "bad"
    directory.mkdir()
    write_csv(directory / "rec_inter.csv", rec_header, rec or [rec_row(1, 10, DAY0)])
    write_csv(directory / "src_inter.csv", SRC_HEADER, src or [src_row(1, 1, DAY0, "[1]", 10, 1)])
    return directory


@pytest.mark.parametrize(
    "case, expected",
    [
        ("header", ["rec_inter.csv:1:", "expected a header with columns user_id, item_id, timestamp, click",
                    "missing timestamp"]),
        ("columns", ["rec_inter.csv:3:", "expected 9 columns as in the header", "got 10"]),
        ("timestamp", ["rec_inter.csv:2:", "expected column timestamp to be a number (ms)", "got 'yesterday'"]),
        ("seconds", ["rec_inter.csv:2:", "expected column timestamp to be epoch milliseconds", "1684684800"]),
        ("keyword", ["src_inter.csv:3:", "expected column keyword to be a list of integer ids", "got '[20, x]'"]),
        ("user", ["src_inter.csv:2:", "expected column user_id to be an integer", "got 'u1'"]),
    ],
)
def test_malformed_input_is_one_clear_line(tmp_path, run_cli, case, expected):
    if case == "header":
        directory = _dir_with(tmp_path, rec_header=[c if c != "timestamp" else "ts" for c in REC_HEADER])
    elif case == "columns":
        directory = _dir_with(tmp_path, rec=[rec_row(1, 10, DAY0), rec_row(1, 11, DAY0) + ["extra"]])
    elif case == "timestamp":
        directory = _dir_with(tmp_path, rec=[rec_row(1, 10, "yesterday")])
    elif case == "seconds":
        directory = _dir_with(tmp_path, rec=[rec_row(1, 10, DAY0 // 1000)])
    elif case == "keyword":
        directory = _dir_with(tmp_path, src=[src_row(1, 1, DAY0, "[1]", 10, 1), src_row(1, 2, DAY0, "[20, x]", 10, 1)])
    else:
        directory = _dir_with(tmp_path, src=[src_row("u1", 1, DAY0, "[1]", 10, 1)])
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = run_cli("data", "kuaisar", str(directory), "--out", str(out))
    assert code == 2
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("unisar data kuaisar: error: ")
    for part in expected:
        assert part in stderr
    assert not out.exists()


def test_missing_file_is_reported(tmp_path, run_cli):
    code, _, stderr = run_cli("data", "kuaisar", str(tmp_path), "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "rec_inter.csv" in stderr and "no such file" in stderr


def test_data_error_names_file_line_expected_got():
    err = DataError("a.csv", 7, "a number", "'x'")
    assert str(err) == "a.csv:7: expected a number, got 'x'"


def test_empty_keyword_sessions_are_dropped(tmp_path):
    src = [src_row(1, 1, DAY0, "[]", 10, 1), src_row(1, 2, DAY0 + 1, "[4]", 10, 1)]
    data = kuaisar.load(write_kuaisar(tmp_path, [rec_row(1, 10, DAY0)], src))
    assert data.s_sid.tolist() == [2] and data.c_owner.tolist() == [0]
    assert data.notes["search_sessions_empty_keyword_dropped"] == 1
    assert np.array_equal(data.c_item, [10])
