"""Event and item catalogue files: the edges every source writes through.

Events: JSONL (one event v1 object per line; `.jsonl.gz` is gzip-compressed) or parquet
(`.parquet`, needs pyarrow: pip install 'unisar-stream[parquet]'). Every event is validated
against event v1 on the way out, so a file written here is one the producer and worker
accept. Files are written to a temporary name and renamed at the end: a failed run leaves no
half-written file behind. Event files are read by stream.contract.files (read_values,
read_dicts, read_events), which every command shares.

Parquet layout (the schema in stream.contract.files; a flat table, one row per event): v,
event_id, user, ts (int64 ms), type, item, click, query, clicks (list of strings). Ids and
query words are written as strings: stream.contract.ids hashes 12 and "12" alike, so nothing
the model sees changes; a word-id query becomes its ids joined by spaces.

Item catalogue: `X.items.jsonl` beside `X.jsonl` (stream.contract.files.catalogue_path), one
catalogue v1 record a line (stream.contract.items: an item's category ids by level and
caption words, or a user's profile fields).
Every record is validated on the way out, as every event is, so a source cannot write a
record the trainer or `unisar produce` would refuse. Read with stream.contract.files.read_items
(hashed, for the model) or `read_catalogue` below (the records as written, for commands that
copy or count them).
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from tqdm import tqdm

from stream.contract.events import Rejection, validate
from stream.contract.files import EventFile
from stream.contract.items import CatalogueRecord, parse_record, validate_record
from stream.data import DataError, require_pyarrow, show

PARQUET_BATCH = 65_536


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_parquet(path: str | Path) -> bool:
    return str(path).endswith(".parquet")


def progress(iterable: Iterable, desc: str, total: int | None = None, unit: str = "ev") -> Iterable:
    """tqdm on stderr when it is a terminal (silent in pipes and tests)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=True, mininterval=1.0, disable=None)


def write_events(
    events: Iterable[dict],
    path: str | Path,
    *,
    check: bool = True,
    check_every: int = 1,
    on_event: Callable[[dict], None] | None = None,
    desc: str | None = None,
    total: int | None = None,
) -> int:
    """Write events to `path` (.jsonl, .jsonl.gz or .parquet); return how many.

    `check` validates events against event v1 (a failure raises DataError naming the event):
    every one, or with `check_every` k > 1 the first 1,000 and then every k-th (for trusted
    generators, where validation would cost more than generation). `on_event` sees each
    event dict after its check (statistics on the way out).
    """
    stream = _inspected(progress(events, desc or f"writing {Path(path).name}", total), path, check, check_every,
                        on_event)
    if is_parquet(path):
        return _write_parquet(stream, path)
    count = 0
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            raw = gzip.open(tmp, "wb", compresslevel=5)
        else:
            raw = open(tmp, "wb", buffering=1 << 20)
        with raw as fh:
            write = fh.write
            for event in stream:
                count += 1
                write(dumps(event, option=newline))
    return count


def _inspected(events: Iterable[dict], path, check: bool, check_every: int, on_event) -> Iterator[dict]:
    """`events`, each checked (see write_events) and shown to `on_event` on the way out."""
    for count, event in enumerate(events, 1):
        if check and (check_every == 1 or count <= 1000 or count % check_every == 0):
            _check(event, count, path)
        if on_event is not None:
            on_event(event)
        yield event


def _check(event: dict, n: int, path: str | Path) -> None:
    result = validate(event)
    if isinstance(result, Rejection):
        raise DataError(
            f"event #{n} ({show(event.get('event_id'))}) for {path}",
            None,
            f"an event v1 ({result.expected})",
            result.got,
        )


def _write_parquet(events: Iterable[dict], path: str | Path) -> int:
    pq = require_pyarrow("writing parquet")
    import pyarrow as pa

    schema = pa.schema(
        [
            ("v", pa.int8()),
            ("event_id", pa.string()),
            ("user", pa.string()),
            ("ts", pa.int64()),
            ("type", pa.string()),
            ("item", pa.string()),
            ("click", pa.int8()),
            ("query", pa.string()),
            ("clicks", pa.list_(pa.string())),
        ]
    )
    count = 0
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(str(tmp), schema)
        try:
            rows: list[dict] = []
            for event in events:
                count += 1
                rows.append(_flat(event))
                if len(rows) >= PARQUET_BATCH:
                    writer.write_table(pa.Table.from_pylist(rows, schema))
                    rows.clear()
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema))
        finally:
            writer.close()
    return count


def _flat(event: dict) -> dict:
    query = event.get("query")
    if isinstance(query, list):
        query = " ".join(str(w) for w in query)
    clicks = event.get("clicks")
    item = event.get("item")
    return {
        "v": event["v"],
        "event_id": str(event["event_id"]),
        "user": str(event["user"]),
        "ts": event["ts"],
        "type": event["type"],
        "item": None if item is None else str(item),
        "click": event.get("click"),
        "query": query,
        "clicks": None if clicks is None else [str(c) for c in clicks],
    }


# ---------------------------------------------------------------- item catalogue


def write_items(path: str | Path, records: Iterable[dict]) -> int:
    """Write catalogue v1 records to `path` (JSONL; gzip-compressed when it ends in .gz), each
    validated first (DataError naming the record when one is not v1); return how many."""
    count = 0
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with atomic_path(path) as tmp:
        raw = gzip.open(tmp, "wb", compresslevel=5) if str(path).endswith(".gz") else open(tmp, "wb", buffering=1 << 20)
        with raw as fh:
            for count, record in enumerate(records, 1):
                checked = validate_record(record)
                if isinstance(checked, Rejection):
                    kind = "user" if isinstance(record, dict) and "user" in record else "item"
                    named = record.get(kind) if isinstance(record, dict) else None
                    raise DataError(f"{kind} record #{count} ({show(named)}) for {path}", None,
                                    f"a catalogue v1 record ({checked.expected})", checked.got)
                fh.write(dumps(record, option=newline))
    return count


def read_catalogue(path: str | Path) -> Iterator[tuple[int, dict, CatalogueRecord]]:
    """(line, record as written, validated record) for each record of a catalogue file, by
    read_items' rule (stream.contract.items.parse_record over the event-file reader); DataError
    at the first record that is not catalogue v1. For commands that copy records or key them
    by raw id; the model reads read_items."""
    with EventFile(path) as f:
        for line, value in f.values():
            record = parse_record(value)
            if isinstance(record, Rejection):
                raise DataError(path, line, f"a catalogue v1 record ({record.expected})", record.got)
            yield line, orjson.loads(value), record
