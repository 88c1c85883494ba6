"""Data sources: every data set ends as a stream of event v1 dicts (stream.contract.events), in
timestamp order, so one pipeline (JSONL -> producer -> worker) serves all of them.

Modules: `kuaisar` (the KuaiSAR layout), `movielens` (ml-100k with derived searches),
`simulator` (a calibrated synthetic stream), `convert` (generic CSV/JSONL/parquet with a
column mapping), `split` (time splits), `stats` (transition statistics), `jsonl` (event and
category files), `tabular` (row readers that report file and line on bad input).

The core is pure generators of dicts; files are read and written at the edges. Bad input
raises `DataError`, which names the file, the line, what was expected and what arrived;
the CLI prints it and exits non-zero.
"""
from __future__ import annotations

from pathlib import Path


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
    """Import pyarrow for parquet, or raise SourceUnavailable saying how to get it."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceUnavailable(
            f"{purpose} needs the optional package pyarrow, which is not installed "
            "(pip install pyarrow), or use JSONL instead"
        ) from None
    return pq


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
