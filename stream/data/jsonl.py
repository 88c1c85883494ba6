"""Event and category files: the edges every source writes through.

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

Categories: `X.categories.csv` beside `X.jsonl`, header `item,category`, one item a line.
"""
from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from tqdm import tqdm

from stream.contract.events import Rejection, validate
from stream.data import DataError, require_pyarrow, show
from stream.data.tabular import CsvTable

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


# ---------------------------------------------------------------- categories


def write_categories(path: str | Path, pairs: Iterable[tuple[object, object]]) -> int:
    """Write `item,category` rows; return how many."""
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(("item", "category"))
            for item, category in pairs:
                writer.writerow((item, category))
                count += 1
    return count


def read_categories(path: str | Path) -> dict[str, str]:
    """item (as text) -> category, from an `item,category` CSV."""
    out: dict[str, str] = {}
    with CsvTable(path, ["item", "category"]) as table:
        i, c = table.columns["item"], table.columns["category"]
        for line, row in table:
            item = row[i].strip()
            if not item:
                raise table.error(line, "item", "an item id", row[i])
            out[item] = row[c].strip()
    return out
