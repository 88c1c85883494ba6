"""Data sources: every data set ends as a stream of event v1 dicts (stream.contract.events), in
timestamp order, so one pipeline (JSONL -> producer -> worker) serves all of them.

Modules: `kuaisar` (the KuaiSAR layout), `movielens` (ml-100k with derived searches),
`simulator` (a calibrated synthetic stream), `convert` (generic CSV/JSONL/parquet with a
column mapping), `split` (time splits), `stats` (transition statistics), `jsonl` (writing event
files; category files), `tabular` (CSV readers that report file and line on bad input).

The core is pure generators of dicts; files are read and written at the edges. Bad input
raises `DataError`, which names the file, the line, what was expected and what arrived;
the CLI prints it and exits non-zero. Event files are read by stream.contract.files (JSONL,
`.jsonl.gz`, parquet), the one reader every command shares.
"""
from __future__ import annotations

from pathlib import Path

# Malformed input, missing sources and the parquet import belong to the event-file reader
# (stream.contract.files): one error format and one install hint for every file the project reads.
from stream.contract.files import DataError, SourceUnavailable, require_pyarrow  # noqa: F401


def show(value: object, limit: int = 60) -> str:
    """A short repr of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_EVENT_SUFFIXES = (".jsonl.gz", ".jsonl", ".ndjson", ".parquet", ".json")


def stem(events_path: str | Path) -> Path:
    """`out/x.jsonl` -> `out/x`: the prefix for files written beside an events file."""
    path = Path(events_path)
    for suffix in _EVENT_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def categories_path(events_path: str | Path) -> Path:
    """Where the item -> category file of an events file lives: beside it, `X.categories.csv`."""
    base = stem(events_path)
    return base.with_name(f"{base.name}.categories.csv")
