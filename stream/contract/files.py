"""Event files: the one reader of JSONL, gzip-compressed JSONL and parquet event files.

Every command that reads events (`produce`, `fit`, `eval`, `train --heldout`, `demo
--dataset`, `inspect --events` and every `unisar data` command) reads them here, so a file
that one command accepts, all of them accept.

The format follows the file's name:
  `*.parquet`   parquet, one row per event (needs pyarrow: pip install 'unisar-stream[parquet]')
  `*.gz`        gzip-compressed JSONL (`events.jsonl.gz`)
  `-`           JSONL on standard input (`unisar produce --file -`)
  anything else JSONL: one event v1 object per line, UTF-8; blank lines are skipped
`format="jsonl"` or `format="parquet"` overrides the name (compression still follows `.gz`).

Three views of the same file, each with the event's line number (from 1: the physical line
of a JSONL file, blank lines counted; the row of a parquet file):
  `read_values(path)`  (line, bytes): the event as a Kafka message value would be: a JSONL
                       line verbatim (without its line break and surrounding whitespace), a
                       parquet row as compact JSON. Nothing is decoded or validated here:
                       whoever consumes the values (the producer, the offline stream) does that
                       and reports a bad one with its line number, as the worker would.
  `read_dicts(path)`   (line, dict): decoded; a line that is not a JSON object raises DataError.
  `read_events(path)`  (line, dict, Event): validated against event v1; DataError on the first
                       event that is not one.
`open_events(path)` opens the file at once (so a missing file is reported before any other
work) and offers the same views as methods.

Parquet schema (what stream.data.jsonl.write_events writes; one column per event field):
  v int8, event_id string, user string, ts int64 (epoch milliseconds), type string,
  item string (null for a search), click int8 (null for a search),
  query string (null for a rec), clicks list<string> (null for a rec).
A reader accepts any column types whose values are the event's JSON types: ids as strings or
integers, `query` as text or as a list of word ids (list<string> or list<int64>). A null cell
is an absent field (a search without clicks may leave `clicks` null). A column that is no
event field makes every row an invalid event (as an unknown field would in JSON); `ts` must
be an integer column (a timestamp column arrives as text and is refused as such).

Errors: a file that cannot be read (missing, unreadable, not gzip, not parquet) raises
DataError naming the file (and the line, where there is one); a parquet file without pyarrow
installed raises SourceUnavailable, one line saying how to install it.
"""
from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from stream.contract.events import Event, Rejection, validate
from stream.contract.items import CatalogueRecord, parse_record

FORMATS = ("jsonl", "jsonl.gz", "parquet")
STDIN = "-"
PARQUET_BATCH_ROWS = 65_536
PARQUET_EXTRA = "pip install 'unisar-stream[parquet]'"


class DataError(Exception):
    """Malformed input: where (file, line), what was expected, what arrived."""

    def __init__(self, source: str | Path, line: int | None, expected: str, got: str) -> None:
        self.source = str(source)
        self.line = line
        self.expected = expected
        self.got = got
        where = self.source if line is None else f"{self.source}:{line}"
        super().__init__(f"{where}: expected {expected}, got {got}")


class SourceUnavailable(Exception):
    """A data set could not be obtained (offline, missing file, missing optional package)."""


def require_pyarrow(purpose: str):
    """pyarrow.parquet, or SourceUnavailable saying (in one line) how to install it."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceUnavailable(
            f"{purpose} needs the optional package pyarrow, which is not installed: {PARQUET_EXTRA} "
            "(or use JSONL: .jsonl or .jsonl.gz)"
        ) from None
    return pq


def event_format(path: str | Path, format: str | None = None) -> str:
    """'jsonl', 'jsonl.gz' or 'parquet' for `path` (stdin, `-`, is 'jsonl')."""
    name = str(path)
    if format not in (None, "jsonl", "parquet"):
        raise ValueError(f"format must be jsonl or parquet, got {format!r}")
    if name == STDIN:
        return "jsonl"
    if format == "parquet" or (format is None and name.lower().endswith(".parquet")):
        return "parquet"
    return "jsonl.gz" if name.lower().endswith(".gz") else "jsonl"


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


class EventFile:
    """An event file, opened now; iterate one of its views once. A context manager."""

    def __init__(self, path: str | Path, format: str | None = None) -> None:
        self.path = str(path)
        self.format = event_format(path, format)
        self._fh: BinaryIO | None = None
        self._parquet = None
        if self.path == STDIN:
            self._fh = sys.stdin.buffer
            return
        if self.format == "parquet":
            pq = require_pyarrow(f"reading parquet ({self.path})")
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except IsADirectoryError:
            raise DataError(self.path, None, "an event file", "a folder") from None
        except OSError as exc:
            raise DataError(self.path, None, "a readable event file", _why(exc)) from None
        if self.format == "parquet":
            try:
                self._parquet = pq.ParquetFile(self._fh)
            except Exception as exc:  # noqa: BLE001 - pyarrow's errors: say what arrived, no traceback
                self.close()
                raise DataError(self.path, None, "a parquet file", f"{type(exc).__name__}: {_why(exc)}") from None
        elif self.format == "jsonl.gz":
            self._fh = gzip.GzipFile(fileobj=self._fh, mode="rb")

    # ------------------------------------------------------------ views

    def values(self) -> Iterator[tuple[int, bytes]]:
        """(line, raw event bytes) for each event (see the module's doc)."""
        if self._parquet is not None:
            yield from self._parquet_values()
            return
        assert self._fh is not None
        number = 0
        try:
            for number, raw in enumerate(self._fh, 1):  # noqa: B007 - the number is reported on error
                value = raw.strip()
                if value:
                    yield number, value
        except (OSError, EOFError, zlib.error) as exc:  # a damaged or truncated gzip stream, a read error
            what = "gzip-compressed JSONL" if self.format == "jsonl.gz" else "a readable event file"
            raise DataError(self.path, number + 1, what, _why(exc)) from None

    def dicts(self) -> Iterator[tuple[int, dict]]:
        """(line, decoded event object) for each event; DataError at a line that is not one."""
        if self._parquet is not None:
            yield from self._parquet_rows()
            return
        for number, value in self.values():
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise DataError(self.path, number, "one JSON object per line", f"{_short(value)} ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(self.path, number, "a JSON object", f"a JSON {type(obj).__name__}")
            yield number, obj

    def events(self) -> Iterator[tuple[int, dict, Event]]:
        """(line, object, validated Event) for each event; DataError on the first invalid one."""
        for number, obj in self.dicts():
            event = validate(obj)
            if isinstance(event, Rejection):
                raise DataError(self.path, number, f"an event v1 ({event.expected})", event.got)
            yield number, obj, event

    def count(self) -> int | None:
        """How many events (lines, for JSONL) the file holds, when cheap to know; None otherwise
        (stdin, gzip). For progress bars; reads a plain file once more."""
        if self._parquet is not None:
            return self._parquet.metadata.num_rows
        if self.path == STDIN or self.format != "jsonl":
            return None
        try:
            with open(self.path, "rb") as fh:
                return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
        except OSError:
            return None

    # ------------------------------------------------------------ parquet

    def _parquet_rows(self) -> Iterator[tuple[int, dict]]:
        row = 0
        try:
            for batch in self._parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for record in batch.to_pylist():
                    row += 1
                    yield row, {k: v for k, v in record.items() if v is not None}
        except Exception as exc:  # noqa: BLE001 - a damaged file: pyarrow's errors, one line
            raise DataError(self.path, row + 1, "a readable parquet row", f"{type(exc).__name__}: {_why(exc)}") \
                from None

    def _parquet_values(self) -> Iterator[tuple[int, bytes]]:
        for row, record in self._parquet_rows():
            try:
                yield row, orjson.dumps(record)
            except TypeError as exc:
                raise DataError(self.path, row, "event fields of JSON types (integers, text, lists)",
                                _why(exc)) from None

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        if self._fh is not None and self.path != STDIN:
            self._fh.close()
        self._fh = None

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(value: bytes, limit: int = 60) -> str:
    text = repr(bytes(value[:limit]))
    return text + ("..." if len(value) > limit else "")


def open_events(path: str | Path, format: str | None = None) -> EventFile:
    """Open an event file now (DataError or SourceUnavailable at once when it cannot be read)."""
    return EventFile(path, format)


def read_values(path: str | Path, format: str | None = None) -> Iterator[tuple[int, bytes]]:
    """(line, raw event bytes) for each event of the file; it is opened on the first step."""
    with EventFile(path, format) as f:
        yield from f.values()


def read_dicts(path: str | Path, format: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line, decoded event object) for each event; DataError at a line that is no JSON object."""
    with EventFile(path, format) as f:
        yield from f.dicts()


def read_events(path: str | Path, format: str | None = None) -> Iterator[tuple[int, dict, Event]]:
    """(line, object, validated Event) for each event; DataError on the first invalid one."""
    with EventFile(path, format) as f:
        yield from f.events()


EVENT_SUFFIXES = (".jsonl.gz", ".jsonl", ".ndjson", ".parquet", ".json")


def stem(events_path: str | Path) -> Path:
    """`out/x.jsonl` -> `out/x`: the prefix for files written beside an event file."""
    path = Path(events_path)
    for suffix in EVENT_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def catalogue_path(events_path: str | Path) -> Path:
    """Where the item catalogue of an event file lives: beside it, `X.items.jsonl`."""
    base = stem(events_path)
    return base.with_name(f"{base.name}.items.jsonl")


def world_path(events_path: str | Path) -> Path:
    """Where the world of a simulated event file (its simulator config) lives: beside it,
    `X.world.json`."""
    base = stem(events_path)
    return base.with_name(f"{base.name}.world.json")


def read_items(path: str | Path, format: str | None = None) -> Iterator[tuple[int, CatalogueRecord | Rejection]]:
    """(line, catalogue record or why it is not one) for each record of a catalogue file
    (stream.contract.items; JSONL, .jsonl.gz or parquet, read as event files are). A bad
    record is the caller's to report or skip, as a bad event is."""
    with EventFile(path, format) as f:
        for number, value in f.values():
            yield number, parse_record(value)
