"""Data sources: every data set ends as a stream of event v1 dicts (stream.contract.events), in
timestamp order, so one pipeline (JSONL -> producer -> worker) serves all of them.

Modules: `kuaisar` (the KuaiSAR layout), `movielens` (ml-100k with derived searches),
`simulator` (a calibrated synthetic stream), `convert` (generic CSV/JSONL/parquet with a
column mapping), `core` (k-core filtering), `split` (time splits), `stats` (transition
statistics), `jsonl` (writing event files and item catalogues), `tabular` (CSV readers that
report file and line on bad input).

Beside the events each source writes what it knows of its items and users: a catalogue
(`X.items.jsonl` beside `X.jsonl`, stream.contract.items: an item's category ids by level and
caption words, a user's profile fields), the same records the compacted topic `sar.items`
carries.

The core is pure generators of dicts; files are read and written at the edges. Bad input
raises `DataError`, which names the file, the line, what was expected and what arrived;
the CLI prints it and exits non-zero. Event files are read by stream.contract.files (JSONL,
`.jsonl.gz`, parquet), the one reader every command shares.
"""
from __future__ import annotations

# Malformed input, missing sources and the parquet import belong to the event-file reader
# (stream.contract.files): one error format and one install hint for every file the project reads.
from stream.contract.files import DataError, SourceUnavailable, catalogue_path, require_pyarrow, stem  # noqa: F401


def show(value: object, limit: int = 60) -> str:
    """A short repr of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
