"""Generic converter: rows of a CSV/TSV, JSONL or parquet file -> event v1, by a column map.

The map names, for each event field, the source column holding it:
    user=uid,item=iid,ts=time,type=kind,click=clicked,query=q,clicks=clicked_items,event_id=id
Required: user and ts; item for rec rows, query for search rows. Everything else is optional:
- type: 'rec' or 'search' (also 'recommendation', 'browse' -> rec; 'query', 'src' -> search).
  Without a type column every row gets `default_type`; 'infer' (the default) makes a row
  with a non-empty query a search and any other row a rec.
- ts: a number in `ts_unit` ('ms' default, or 's'); converted to integer epoch ms.
- click: 1/0, true/false (default 1).
- query: text, or a list of word ids (a JSON list, or text like "[12, 7, 3]").
- clicks: a JSON list, text like "[1, 2]", or ids separated by `list_sep` ('|' default); empty = none.
- event_id: default "<file stem>:<line>".
Ids are kept as they arrive (text from CSV, numbers from JSON; both hash alike).
Every event is validated against event v1 at its row: a bad row raises a DataError naming the
file and line (the row number for parquet). Events are sorted by time (stable: file order on
ties) unless `sort=False`, which streams in file order with flat memory.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from stream.contract.events import MIN_TS_MS, Rejection, validate
from stream.data import DataError, show
from stream.contract.files import read_dicts
from stream.data.tabular import CsvTable, parse_ms

FIELDS = ("user", "item", "ts", "type", "click", "query", "clicks", "event_id")
TYPES = {"rec": "rec", "recommendation": "rec", "browse": "rec", "search": "search", "query": "search", "src": "search"}
FORMATS = ("csv", "tsv", "jsonl", "parquet")


def parse_map(text: str) -> dict[str, str]:
    """'user=uid,item=iid' -> {'user': 'uid', 'item': 'iid'} (ValueError with the reason)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, column = part.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not column:
            raise ValueError(f"expected FIELD=COLUMN in the map, got {part!r}")
        if name not in FIELDS:
            raise ValueError(f"unknown event field {name!r} in the map (fields: {', '.join(FIELDS)})")
        out[name] = column
    for name in ("user", "ts"):
        if name not in out:
            raise ValueError(f"the map needs {name}=COLUMN")
    if "item" not in out and "query" not in out:
        raise ValueError("the map needs item=COLUMN (rec) or query=COLUMN (search)")
    return out


@dataclass(frozen=True)
class Mapping:
    columns: dict[str, str] = field(default_factory=dict)
    ts_unit: str = "ms"
    default_type: str = "infer"  # 'rec', 'search' or 'infer'
    list_sep: str = "|"

    def __post_init__(self) -> None:
        if self.ts_unit not in ("s", "ms"):
            raise ValueError(f"ts unit must be 's' or 'ms', got {self.ts_unit!r}")
        if self.default_type not in ("rec", "search", "infer"):
            raise ValueError(f"default type must be rec, search or infer, got {self.default_type!r}")


def detect_format(path: str | Path) -> str:
    name = str(path).lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    return "csv"


def rows(path: str | Path, fmt: str, mapping: Mapping, delimiter: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line or row number, {column: value}) of the source, only the mapped columns."""
    wanted = list(dict.fromkeys(mapping.columns.values()))
    if fmt in ("csv", "tsv"):
        delim = delimiter or ("\t" if fmt == "tsv" else ",")
        with CsvTable(path, wanted, delimiter=delim) as table:
            index = [(c, table.columns[c]) for c in wanted]
            for line, row in table:
                yield line, {c: row[i] for c, i in index}
    elif fmt in ("jsonl", "parquet"):
        for line, obj in read_dicts(path, fmt):  # the event-file reader: .gz, parquet (null cells absent)
            yield line, {c: obj.get(c) for c in wanted}
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _id_list(value: object, sep: str, source: str, line: int, column: str) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, (tuple,)):
        return list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list):
            raise DataError(source, line, f"column {column} to be a list of ids like [1, 2]", show(value))
        return parsed
    return [part.strip() for part in text.split(sep) if part.strip()]


def _click(value: object, source: str, line: int, column: str) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes"):
        return 1
    if text in ("0", "0.0", "false", "no"):
        return 0
    raise DataError(source, line, f"column {column} to be 1/0 or true/false", show(value))


def to_event(row: dict, line: int, mapping: Mapping, source: str, id_prefix: str) -> dict:
    """One source row -> one validated event v1 dict (DataError naming the line otherwise)."""
    cols = mapping.columns

    def get(name: str) -> object:
        column = cols.get(name)
        return None if column is None else row.get(column)

    query = get("query")
    if isinstance(query, str):
        query = query.strip()
        if query.startswith("["):
            query = _id_list(query, mapping.list_sep, source, line, cols["query"])
    raw_type = get("type")
    if raw_type is not None and str(raw_type).strip():
        kind = TYPES.get(str(raw_type).strip().lower())
        if kind is None:
            raise DataError(source, line, f"column {cols['type']} to be rec or search", show(raw_type))
    elif mapping.default_type != "infer":
        kind = mapping.default_type
    else:
        kind = "search" if query not in (None, "", []) else "rec"
    ts = parse_ms(get("ts"), source, line, cols["ts"], mapping.ts_unit)
    if kind == "search" and "query" not in cols:
        raise DataError(source, line, "a query column (query=COLUMN in the map) for a search row", "none")
    if kind == "rec" and "item" not in cols:
        raise DataError(source, line, "an item column (item=COLUMN in the map) for a rec row", "none")
    event_id = get("event_id")
    event: dict = {"v": 1, "event_id": f"{id_prefix}{line}" if event_id in (None, "") else event_id,
                   "user": _strip(get("user")), "ts": ts, "type": kind}
    if kind == "rec":
        event["item"] = _strip(get("item"))
        event["click"] = _click(get("click"), source, line, cols.get("click", "click"))
    else:
        event["query"] = query
        event["clicks"] = [_strip(c) for c in _id_list(get("clicks"), mapping.list_sep, source, line,
                                                      cols.get("clicks", "clicks"))]
    result = validate(event)
    if isinstance(result, Rejection):
        hint = ""
        if result.expected.startswith("ts ") and mapping.ts_unit == "ms" and 0 < ts < MIN_TS_MS:
            hint = " (seconds? use ts unit s)"
        raise DataError(source, line, f"a valid {kind} event: {result.expected}", result.got + hint)
    return event


def _strip(value: object) -> object:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def convert(
    path: str | Path,
    mapping: Mapping,
    fmt: str | None = None,
    delimiter: str | None = None,
    sort: bool = True,
    id_prefix: str | None = None,
) -> Iterator[dict]:
    """Events of a source file, validated, in time order (or file order when sort=False)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    prefix = id_prefix if id_prefix is not None else f"{path.name.split('.')[0][:40]}:"
    source = str(path)
    converted = (to_event(row, line, mapping, source, prefix) for line, row in rows(path, fmt, mapping, delimiter))
    if not sort:
        yield from converted
        return
    events = list(converted)
    events.sort(key=lambda e: e["ts"])
    yield from events
