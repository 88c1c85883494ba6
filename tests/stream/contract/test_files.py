"""The one event-file reader (stream.contract.files): JSONL, .jsonl.gz and parquet give the
same events with their line numbers; unreadable files and a missing pyarrow say so in one line."""
from __future__ import annotations

import gzip
import importlib.util
import io
import sys

import orjson
import pytest

from stream.contract.events import parse_event
from stream.contract.files import (
    DataError,
    SourceUnavailable,
    event_format,
    open_events,
    read_dicts,
    read_events,
    read_values,
)

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
T = 1_700_000_000_000
EVENTS = [
    {"v": 1, "event_id": "e1", "user": "u1", "ts": T, "type": "rec", "item": "i9", "click": 1},
    {"v": 1, "event_id": "e2", "user": "u1", "ts": T + 1, "type": "search", "query": "red shoes",
     "clicks": ["i7", "i8"]},
    {"v": 1, "event_id": "e3", "user": 42, "ts": T + 2, "type": "search", "query": [12, 7], "clicks": []},
    {"v": 1, "event_id": "e4", "user": "u2", "ts": T + 3, "type": "rec", "item": 5, "click": 0},
]


def jsonl_bytes(events) -> bytes:
    # a blank line after the first event: it is skipped, but counted in the line numbers
    lines = [orjson.dumps(e) for e in events]
    return lines[0] + b"\n\n" + b"\n".join(lines[1:]) + b"\n"


def write(path, fmt: str, events=EVENTS):
    if fmt == "jsonl":
        path.write_bytes(jsonl_bytes(events))
    elif fmt == "jsonl.gz":
        path.write_bytes(gzip.compress(jsonl_bytes(events)))
    else:
        from stream.data.jsonl import write_events  # the project's parquet writer, its documented schema

        write_events(events, path)
    return path


@pytest.mark.parametrize("fmt", [
    "jsonl", "jsonl.gz",
    pytest.param("parquet", marks=pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed "
                                                     "(pip install 'unisar-stream[parquet]')")),
])
def test_every_format_yields_the_same_events_with_line_numbers(tmp_path, fmt):
    path = write(tmp_path / f"events.{fmt}", fmt)
    assert event_format(path) == fmt
    values = list(read_values(path))
    lines = [line for line, _ in values]
    assert lines == ([1, 2, 3, 4] if fmt == "parquet" else [1, 3, 4, 5])  # parquet: row numbers
    # the same events reach the stream, whatever the file: ids hash alike as text or integers
    assert [parse_event(v) for _, v in values] == [parse_event(orjson.dumps(e)) for e in EVENTS]
    if fmt != "parquet":  # a JSONL line is sent verbatim, as a Kafka message value
        assert [v for _, v in values] == [orjson.dumps(e) for e in EVENTS]
    dicts = list(read_dicts(path))
    assert [line for line, _ in dicts] == lines and dicts[0][1]["event_id"] == "e1"
    assert "item" not in dicts[1][1] and "query" not in dicts[0][1]  # parquet: a null cell is an absent field
    checked = list(read_events(path))
    assert [e.event_id for _, _, e in checked] == ["e1", "e2", "e3", "e4"]
    with open_events(path) as f:
        assert f.count() == (None if fmt == "jsonl.gz" else 5 if fmt == "jsonl" else 4)


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed (pip install 'unisar-stream[parquet]')")
def test_parquet_of_other_column_types(tmp_path):
    """Integer ids, a query as a list of word ids, null clicks for a search: all event v1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "v": pa.array([1, 1], pa.int64()), "event_id": ["a", "b"], "user": pa.array([7, 8], pa.int64()),
        "ts": pa.array([T, T + 5], pa.int64()), "type": ["rec", "search"],
        "item": pa.array([3, None], pa.int64()), "click": pa.array([1, None], pa.int64()),
        "query": pa.array([None, [12, 7]], pa.list_(pa.int64())), "clicks": pa.array([None, None], pa.list_(pa.string())),
    })
    path = tmp_path / "other.parquet"
    pq.write_table(table, path)
    (_, rec), (_, search) = read_values(path)
    assert orjson.loads(search) == {"v": 1, "event_id": "b", "user": 8, "ts": T + 5, "type": "search", "query": [12, 7]}
    assert parse_event(rec) == parse_event(orjson.dumps({"v": 1, "event_id": "a", "user": "7", "ts": T,
                                                        "type": "rec", "item": "3", "click": 1}))
    assert not hasattr(parse_event(search), "expected")  # valid, not a Rejection


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed (pip install 'unisar-stream[parquet]')")
def test_a_file_that_is_not_parquet_is_named(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_bytes(b"not parquet at all\n")
    with pytest.raises(DataError, match=r"fake.parquet: expected a parquet file, got"):
        open_events(path)


def test_without_pyarrow_parquet_fails_with_one_line_naming_the_extra(tmp_path, monkeypatch):
    for name in ("pyarrow", "pyarrow.parquet"):  # None in sys.modules: the import fails
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SourceUnavailable) as info:
        list(read_values(tmp_path / "events.parquet"))
    message = str(info.value)
    assert "pip install 'unisar-stream[parquet]'" in message and "\n" not in message
    assert "events.parquet" in message


def test_unreadable_files_are_data_errors_naming_file_and_line(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: expected a readable event file, got no such file"):
        list(read_values(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="expected an event file, got a folder"):
        open_events(tmp_path)
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_bytes(orjson.dumps(EVENTS[0]) + b"\n")  # named .gz, not compressed
    with pytest.raises(DataError, match=r"plain.jsonl.gz:1: expected gzip-compressed JSONL, got not a gzipped file"):
        list(read_values(fake))
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(jsonl_bytes(EVENTS * 50))[:-30])
    with pytest.raises(DataError, match="cut.jsonl.gz:.*expected gzip-compressed JSONL"):
        list(read_values(truncated))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps(EVENTS[0]) + b"\n{not json\n[1, 2]\n")
    assert [line for line, _ in read_values(bad)] == [1, 2, 3]  # the raw view leaves judging to the caller
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected one JSON object per line, got b'\{not json'"):
        list(read_dicts(bad))
    bad.write_bytes(orjson.dumps(EVENTS[0]) + b"\n[1, 2]\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected a JSON object, got a JSON list"):
        list(read_dicts(bad))
    bad.write_bytes(orjson.dumps({**EVENTS[0], "click": 7}) + b"\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: expected an event v1 \(click to be the integer 0 or 1\), got 7"):
        list(read_events(bad))


def test_dash_reads_jsonl_from_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl_bytes(EVENTS))))
    with open_events("-") as f:
        assert f.count() is None
        assert [line for line, _ in f.values()] == [1, 3, 4, 5]
    assert not sys.stdin.closed  # stdin is not ours to close
