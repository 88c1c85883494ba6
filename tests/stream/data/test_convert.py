from __future__ import annotations

import sys

import orjson
import pytest
from data_helpers import write_csv
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract.events import Event, validate
from stream.data import convert

T0 = 1_700_000_000  # seconds


def _read(path):
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_csv_with_mapping_seconds_and_types(tmp_path, run_cli):
    src = write_csv(tmp_path / "log.csv", ["uid", "iid", "time", "kind", "q", "clicked", "c"], [
        ["u1", "i1", T0 + 5, "rec", "", "", "1"],
        ["u1", "", T0 + 1, "search", "Red Shoes", "i7|i8", ""],
        ["u2", "i2", T0 + 3, "browse", "", "", "false"],
        ["u2", "", T0 + 4, "search", "[12, 7, 3]", "[]", ""],
    ])
    out = tmp_path / "log.jsonl"
    code, stdout, stderr = run_cli("data", "convert", str(src), "--out", str(out), "--ts-unit", "s", "--map",
                                   "user=uid,item=iid,ts=time,type=kind,query=q,clicks=clicked,click=c")
    assert code == 0, stderr
    events = _read(out)
    assert [e["ts"] for e in events] == [(T0 + k) * 1000 for k in (1, 3, 4, 5)]  # sorted by time
    assert events[0] == {"v": 1, "event_id": "log:3", "user": "u1", "ts": (T0 + 1) * 1000, "type": "search",
                         "query": "Red Shoes", "clicks": ["i7", "i8"]}
    assert events[1]["type"] == "rec" and events[1]["click"] == 0
    assert events[2]["query"] == [12, 7, 3] and events[2]["clicks"] == []
    assert events[3]["click"] == 1
    assert all(isinstance(validate(e), Event) for e in events)


def test_jsonl_and_tsv_inputs(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"u": 1, "i": 9, "t": 1700000000123}\n\n{"u": 2, "q": [4, 5], "t": 1700000000000, "cl": [9]}\n')
    mapping = convert.Mapping(convert.parse_map("user=u,item=i,ts=t,query=q,clicks=cl"))
    events = list(convert.convert(src, mapping, id_prefix="x"))
    assert events == [
        {"v": 1, "event_id": "x3", "user": 2, "ts": 1700000000000, "type": "search", "query": [4, 5], "clicks": [9]},
        {"v": 1, "event_id": "x1", "user": 1, "ts": 1700000000123, "type": "rec", "item": 9, "click": 1},
    ]
    tsv = write_csv(tmp_path / "in.tsv", ["u", "i", "t"], [["a", "b", "1700000000000"]], delimiter="\t")
    mapping = convert.Mapping(convert.parse_map("user=u,item=i,ts=t"), default_type="rec")
    assert list(convert.convert(tsv, mapping, sort=False))[0]["item"] == "b"


@pytest.mark.parametrize(
    "rows, args, expected",
    [
        ([["u1", "i1", "abc"]], [], "log.csv:2: expected column time to be a number (ms), got 'abc'"),
        ([["u1", "i1", "1"], ["u1", "i1", str(T0)]], [], "log.csv:2: expected a valid rec event: ts to be epoch"),
        ([["u1", "i1", str(T0)], ["u1", ""]], ["--ts-unit", "s"],
         "log.csv:3: expected 3 columns as in the header, got 2"),
        ([["u1", "", str(T0)]], ["--ts-unit", "s"], "log.csv:2: expected a valid rec event: item to be"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, run_cli, rows, args, expected):
    src = write_csv(tmp_path / "log.csv", ["uid", "iid", "time"], rows)
    out = tmp_path / "out.jsonl"
    code, _, stderr = run_cli("data", "convert", str(src), "--map", "user=uid,item=iid,ts=time", "--out", str(out),
                              *args)
    assert code == 2 and "Traceback" not in stderr
    assert expected in stderr, stderr
    assert not out.exists()


def test_seconds_hint_and_bad_header(tmp_path, run_cli):
    src = write_csv(tmp_path / "log.csv", ["uid", "iid", "time"], [["u1", "i1", str(T0)]])
    code, _, stderr = run_cli("data", "convert", str(src), "--map", "user=uid,item=iid,ts=time", "--out",
                              str(tmp_path / "o.jsonl"))
    assert code == 2 and "(seconds? use ts unit s)" in stderr
    code, _, stderr = run_cli("data", "convert", str(src), "--map", "user=user,item=iid,ts=time", "--out",
                              str(tmp_path / "o.jsonl"))
    assert code == 2 and "log.csv:1: expected a header with columns user, iid, time" in stderr


def test_bad_map_is_a_usage_error(tmp_path, run_cli):
    with pytest.raises(SystemExit) as info:
        run_cli("data", "convert", "x.csv", "--map", "user=uid,colour=c", "--out", str(tmp_path / "o.jsonl"))
    assert info.value.code == 2


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, run_cli, monkeypatch):
    for name in ("pyarrow", "pyarrow.parquet"):  # as if it were not installed (None: the import fails)
        monkeypatch.setitem(sys.modules, name, None)
    src = write_csv(tmp_path / "log.csv", ["uid", "iid", "time"], [["u1", "i1", str(T0 * 1000)]])
    code, _, stderr = run_cli("data", "convert", str(src), "--map", "user=uid,item=iid,ts=time",
                              "--out", str(tmp_path / "o.parquet"))
    assert code == 2 and "writing parquet needs the optional package pyarrow" in stderr
    assert "pip install 'unisar-stream[parquet]'" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_cli("data", "convert", str(tmp_path / "x.parquet"), "--map", "user=uid,item=iid,ts=time",
                              "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "reading parquet" in stderr and "needs the optional package pyarrow" in stderr
    assert "pip install 'unisar-stream[parquet]'" in stderr and "Traceback" not in stderr


ids = st.one_of(st.integers(0, 10**12), st.text("abcxyz019_-", min_size=1, max_size=12))


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(ids, ids, st.integers(631_152_000_000, 4_102_444_799_999), st.booleans()),
                     min_size=1, max_size=20))
def test_csv_round_trip_property(tmp_path_factory, rows):
    path = write_csv(tmp_path_factory.mktemp("p") / "r.csv", ["u", "i", "t", "c"],
                     [[u, i, t, int(c)] for u, i, t, c in rows])
    mapping = convert.Mapping(convert.parse_map("user=u,item=i,ts=t,click=c"))
    events = list(convert.convert(path, mapping))
    assert sorted((str(e["user"]), str(e["item"]), e["ts"], e["click"]) for e in events) == sorted(
        (str(u), str(i), t, int(c)) for u, i, t, c in rows
    )
    assert [e["ts"] for e in events] == sorted(t for _, _, t, _ in rows)
    assert all(isinstance(validate(e), Event) for e in events)
