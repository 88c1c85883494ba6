"""KuaiSAR (Sun et al., CIKM 2023) in its released layout -> event v1.

Files read from one directory:
- `rec_inter.csv`: user_id, item_id, timestamp (epoch ms, may be written as a float such as
  1.684742e+12), click (0/1), other columns ignored. One rec event per row; click 0 rows
  are exposures without a click (about half of KuaiSAR), kept unless `rec_clicks_only`.
- `src_inter.csv`: user_id, search_session_id, search_session_timestamp (ms), keyword (a
  list of anonymised word ids, "[20, 34, 3]"), item_id, click_cnt, optionally item_type;
  one row per (session, shown item). The rows of a session (keyed by user and session id,
  in any order) become ONE search event at the session's earliest timestamp whose query
  is the keyword list and whose clicks are the items with click_cnt > 0 (first-seen order,
  duplicates removed, at most 100). Sessions with an empty keyword list are dropped
  (event v1 needs a query word); queries longer than 32 words are cut to 32.
- `item_features.csv` (optional) -> the item catalogue beside the events (`catalogue`;
  stream.contract.items), one record for each item of the events that the file lists:
  categories = `first_level_category_id` .. `fourth_level_category_id` (the columns the
  file has, in level order; an empty cell, 0 or a negative id is an unknown level, null:
  the release documents 0 as the "empty" category, 空, of items without that level), and
  caption = the `caption` column, anonymised word ids from the keywords' vocabulary
  ("[1, 213, 24]", so a caption word and a query word with the same id are one token),
  cut to its first 32 words as queries are. The UniSAR reference code uses the caption
  and the first two levels.
- `user_features.csv` (optional) -> user profiles in the same catalogue (`profiles`), one
  record for each user of the events that the file lists: the columns the UniSAR reference
  uses, PROFILE_COLUMNS (search and rec activity levels, two encrypted one-hot fields), each
  a categorical field (an empty cell: unknown). The file's other 21 one-hot fields are left
  out, as the reference leaves them.

Preprocessing (the UniSAR paper's, each an option; `Options.paper()` turns all on), in
this order:
1. drop the last `drop_last_days` calendar days (Beijing time, UTC+8 by default);
2. keep users with both behaviours (a rec click and a search) and k-core filtering,
   repeated together until nothing changes: a user needs >= k behaviours (rec clicks +
   searches), an item >= k clicks (rec clicks + search clicks). Rec rows of dropped users
   or items go; a kept user's search keeps its query and loses only dropped clicked items;
3. split by day (split.py): the last remaining day is the test set, the day before it
   validation, the rest training.

Ids stay KuaiSAR's integers. Everything is held in numpy columns (about 40 bytes per rec
row), so the full data set (tens of millions of rows) fits in a few GB.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from stream.contract.events import MAX_CLICKS, MAX_QUERY_WORDS, MAX_TS_MS, MIN_TS_MS
from stream.contract.items import MAX_LEVELS
from stream.data import DataError
from stream.data.jsonl import progress
from stream.data.tabular import CsvTable, parse_id_list, parse_int, parse_ms

DAY_MS = 86_400_000
REC_FILE, SRC_FILE, ITEM_FILE, USER_FILE = "rec_inter.csv", "src_inter.csv", "item_features.csv", "user_features.csv"
REC_COLUMNS = ("user_id", "item_id", "timestamp", "click")
SRC_COLUMNS = ("user_id", "search_session_id", "search_session_timestamp", "keyword", "item_id", "click_cnt")
CATEGORY_COLUMNS = tuple(f"{level}_level_category_id" for level in ("first", "second", "third", "fourth"))
CAPTION_COLUMN = "caption"
PROFILE_COLUMNS = ("search_active_level", "rec_active_level", "onehot_feat1", "onehot_feat2")


@dataclass(frozen=True)
class Options:
    both_behaviours: bool = False
    drop_last_days: int = 0
    min_core: int = 0  # 0 or 1: off; the paper uses 5
    tz_hours: float = 8.0  # KuaiSAR days are Beijing days
    rec_clicks_only: bool = False
    search_item_types: frozenset[str] | None = None  # e.g. {"VIDEO", "IMAGE_ATLAS"}; None: all

    @classmethod
    def paper(cls, **overrides: object) -> Options:
        return replace(cls(both_behaviours=True, drop_last_days=2, min_core=5), **overrides)


@dataclass
class KuaiSAR:
    """Columns of one KuaiSAR load. Searches are sessions; clicks point at sessions (`c_owner`)."""

    rec_user: np.ndarray
    rec_item: np.ndarray
    rec_ts: np.ndarray
    rec_click: np.ndarray
    rec_line: np.ndarray  # line in rec_inter.csv (for event ids)
    s_user: np.ndarray
    s_sid: np.ndarray
    s_ts: np.ndarray
    s_query: list[tuple[int, ...]]
    c_owner: np.ndarray  # index into the s_* columns
    c_item: np.ndarray
    notes: dict[str, int] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        items = np.union1d(self.rec_item, self.c_item)
        users = np.union1d(self.rec_user, self.s_user)
        return {
            "users": int(users.size),
            "items": int(items.size),
            "rec_events": int(self.rec_user.size),
            "rec_clicks": int(self.rec_click.sum()),
            "searches": int(self.s_user.size),
            "search_clicks": int(self.c_item.size),
        }


def _i64(values: array) -> np.ndarray:
    return np.frombuffer(values, dtype=np.int64).copy() if len(values) else np.zeros(0, dtype=np.int64)


def _ts(text: str, source: str, line: int, column: str) -> int:
    ts = parse_ms(text, source, line, column)
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        raise DataError(source, line, f"column {column} to be epoch milliseconds (1990..2100)", repr(text))
    return ts


def read_rec(path: Path) -> tuple[np.ndarray, ...]:
    user, item, ts, click, lines = array("q"), array("q"), array("q"), array("q"), array("q")
    src = str(path)
    with CsvTable(path, REC_COLUMNS) as table:
        iu, ii, it, ic = (table.columns[c] for c in REC_COLUMNS)
        for line, row in progress(table, f"reading {path.name}", unit="row"):
            try:
                u, i = int(row[iu]), int(row[ii])
            except ValueError:
                u, i = parse_int(row[iu], src, line, "user_id"), parse_int(row[ii], src, line, "item_id")
            user.append(u)
            item.append(i)
            ts.append(_ts(row[it], src, line, "timestamp"))
            try:
                c = int(row[ic])
            except ValueError:
                c = parse_int(row[ic], src, line, "click")
            click.append(1 if c > 0 else 0)
            lines.append(line)
    return _i64(user), _i64(item), _i64(ts), _i64(click), _i64(lines)


def read_src(path: Path, item_types: frozenset[str] | None) -> tuple:
    src = str(path)
    sessions: dict[tuple[int, int], int] = {}
    s_user, s_sid, s_ts = array("q"), array("q"), array("q")
    s_query: list[tuple[int, ...]] = []
    c_owner, c_item = array("q"), array("q")
    keywords: dict[str, tuple[int, ...]] = {}
    optional = ("item_type",) if item_types is not None else ()
    with CsvTable(path, SRC_COLUMNS, optional=optional) as table:
        iu, isid, its, ikw, ii, icc = (table.columns[c] for c in SRC_COLUMNS)
        itype = table.optional.get("item_type")
        if item_types is not None and itype is None:
            raise DataError(src, 1, "an item_type column (search_item_types was given)", "none")
        for line, row in progress(table, f"reading {path.name}", unit="row"):
            try:
                u, sid, item, cc = int(row[iu]), int(row[isid]), int(row[ii]), int(row[icc])
            except ValueError:
                u = parse_int(row[iu], src, line, "user_id")
                sid = parse_int(row[isid], src, line, "search_session_id")
                item = parse_int(row[ii], src, line, "item_id")
                cc = parse_int(row[icc], src, line, "click_cnt")
            ts = _ts(row[its], src, line, "search_session_timestamp")
            text = row[ikw]
            query = keywords.get(text)
            if query is None:
                query = keywords[text] = tuple(parse_id_list(text, src, line, "keyword"))
            key = (u, sid)
            index = sessions.get(key)
            if index is None:
                index = sessions[key] = len(s_query)
                s_user.append(u)
                s_sid.append(sid)
                s_ts.append(ts)
                s_query.append(query)
            elif ts < s_ts[index]:
                s_ts[index] = ts
            if cc > 0 and (itype is None or row[itype] in item_types):  # type: ignore[operator]
                c_owner.append(index)
                c_item.append(item)
    return _i64(s_user), _i64(s_sid), _i64(s_ts), s_query, _i64(c_owner), _i64(c_item)


def load(directory: str | Path, options: Options = Options()) -> KuaiSAR:
    """Read rec_inter.csv and src_inter.csv from `directory` (no filtering yet)."""
    directory = Path(directory)
    for name in (REC_FILE, SRC_FILE):
        if not (directory / name).is_file():
            raise DataError(directory / name, None, f"the KuaiSAR file {name} in {directory}", "no such file")
    rec = read_rec(directory / REC_FILE)
    s_user, s_sid, s_ts, s_query, c_owner, c_item = read_src(directory / SRC_FILE, options.search_item_types)
    notes = {"rec_rows": int(rec[0].size), "search_sessions_read": int(s_user.size)}
    data = KuaiSAR(*rec, s_user, s_sid, s_ts, s_query, c_owner, c_item, notes)
    data = _dedupe_clicks(data)
    empty = np.fromiter((len(q) == 0 for q in s_query), dtype=bool, count=len(s_query))
    if empty.any():
        data.notes["search_sessions_empty_keyword_dropped"] = int(empty.sum())
        data = _select(data, np.ones(data.rec_user.size, bool), ~empty, None)
    if options.rec_clicks_only:
        data = _select(data, data.rec_click == 1, None, None)
    return data


def _dedupe_clicks(data: KuaiSAR) -> KuaiSAR:
    """One click per (session, item), in first-seen order; at most MAX_CLICKS per session."""
    if not data.c_item.size:
        return data
    pairs = np.stack([data.c_owner, data.c_item], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    first.sort(kind="stable")
    owner, item = data.c_owner[first], data.c_item[first]
    order = np.argsort(owner, kind="stable")
    owner, item = owner[order], item[order]
    rank = np.arange(owner.size) - np.searchsorted(owner, owner, side="left")
    keep = rank < MAX_CLICKS
    if not keep.all():
        data.notes["search_clicks_truncated"] = int((~keep).sum())
    data.c_owner, data.c_item = owner[keep], item[keep]
    return data


def _select(data: KuaiSAR, rec_keep: np.ndarray, s_keep: np.ndarray | None, c_keep: np.ndarray | None) -> KuaiSAR:
    """A copy with the kept rec rows, sessions and clicks (clicks of dropped sessions go too)."""
    c_keep = np.ones(data.c_item.size, bool) if c_keep is None else c_keep
    if s_keep is None:
        s_keep = np.ones(data.s_user.size, bool)
        new_index = np.arange(data.s_user.size)
    else:
        new_index = np.cumsum(s_keep) - 1
        c_keep = c_keep & s_keep[data.c_owner]
    kept_sessions = np.flatnonzero(s_keep)
    return KuaiSAR(
        data.rec_user[rec_keep],
        data.rec_item[rec_keep],
        data.rec_ts[rec_keep],
        data.rec_click[rec_keep],
        data.rec_line[rec_keep],
        data.s_user[s_keep],
        data.s_sid[s_keep],
        data.s_ts[s_keep],
        [data.s_query[i] for i in kept_sessions.tolist()],
        new_index[data.c_owner[c_keep]],
        data.c_item[c_keep],
        dict(data.notes),
    )


def day_of(ts_ms: np.ndarray | int, tz_hours: float) -> np.ndarray | int:
    """Calendar day number of epoch-ms timestamps in the UTC+tz_hours zone."""
    return (ts_ms + int(tz_hours * 3_600_000)) // DAY_MS


def drop_last_days(data: KuaiSAR, days: int, tz_hours: float) -> KuaiSAR:
    if days <= 0 or (data.rec_ts.size + data.s_ts.size) == 0:
        return data
    last = int(max(data.rec_ts.max(initial=0), data.s_ts.max(initial=0)))
    cut = day_of(last, tz_hours) - days  # keep days <= cut
    return _select(data, day_of(data.rec_ts, tz_hours) <= cut, day_of(data.s_ts, tz_hours) <= cut, None)


def filter_users_items(data: KuaiSAR, min_core: int, both_behaviours: bool) -> KuaiSAR:
    """Both-behaviour users and k-core (see module docstring), until a fixed point."""
    if min_core <= 1 and not both_behaviours:
        return data
    while True:
        clicked = data.rec_click == 1
        rec_users, search_users = data.rec_user[clicked], data.s_user
        users, counts = np.unique(np.concatenate([rec_users, search_users]), return_counts=True)
        keep_users = users[counts >= min_core] if min_core > 1 else users
        if both_behaviours:
            keep_users = np.intersect1d(keep_users, np.intersect1d(rec_users, search_users))
        items, counts = np.unique(np.concatenate([data.rec_item[clicked], data.c_item]), return_counts=True)
        keep_items = items[counts >= min_core] if min_core > 1 else None
        rec_keep = np.isin(data.rec_user, keep_users)
        c_keep = None
        if keep_items is not None:
            rec_keep &= np.isin(data.rec_item, keep_items)
            c_keep = np.isin(data.c_item, keep_items)
        s_keep = np.isin(data.s_user, keep_users)
        if rec_keep.all() and s_keep.all() and (c_keep is None or c_keep.all()):
            return data
        data = _select(data, rec_keep, s_keep, c_keep)


def preprocess(data: KuaiSAR, options: Options) -> KuaiSAR:
    data = drop_last_days(data, options.drop_last_days, options.tz_hours)
    return filter_users_items(data, options.min_core, options.both_behaviours)


def events(data: KuaiSAR) -> Iterator[dict]:
    """Event v1 dicts in time order (ties: user, then rec before search, then file order)."""
    n_rec = data.rec_user.size
    ts = np.concatenate([data.rec_ts, data.s_ts])
    user = np.concatenate([data.rec_user, data.s_user])
    kind = np.concatenate([np.zeros(n_rec, np.int8), np.ones(data.s_user.size, np.int8)])
    order = np.lexsort((np.arange(ts.size), kind, user, ts))
    order_of = np.argsort(data.c_owner, kind="stable")
    c_items = data.c_item[order_of].tolist()
    c_ptr = np.searchsorted(data.c_owner[order_of], np.arange(data.s_user.size + 1)).tolist()
    r_user, r_item, r_ts, r_click, r_line = (a.tolist() for a in (data.rec_user, data.rec_item, data.rec_ts,
                                                                   data.rec_click, data.rec_line))
    s_user, s_sid, s_ts, s_query = data.s_user.tolist(), data.s_sid.tolist(), data.s_ts.tolist(), data.s_query
    for i in order.tolist():
        if i < n_rec:
            yield {"v": 1, "event_id": f"r{r_line[i]}", "user": r_user[i], "ts": r_ts[i], "type": "rec",
                   "item": r_item[i], "click": r_click[i]}
        else:
            j = i - n_rec
            yield {"v": 1, "event_id": f"s{s_user[j]}-{s_sid[j]}", "user": s_user[j], "ts": s_ts[j],
                   "type": "search", "query": list(s_query[j][:MAX_QUERY_WORDS]),
                   "clicks": c_items[c_ptr[j]:c_ptr[j + 1]]}


def catalogue(path: str | Path, wanted: np.ndarray) -> Iterator[dict]:
    """Catalogue v1 records from item_features.csv for the items in `wanted` (the first row
    of an item wins; see the module docstring for the columns)."""
    src = str(path)
    wanted_set = set(wanted.tolist())
    with CsvTable(path, ("item_id",), optional=(*CATEGORY_COLUMNS[:MAX_LEVELS], CAPTION_COLUMN)) as table:
        ii = table.columns["item_id"]
        levels = [(name, table.optional.get(name)) for name in CATEGORY_COLUMNS[:MAX_LEVELS]]
        while levels and levels[-1][1] is None:  # columns beyond the file's deepest level
            levels.pop()
        icap = table.optional.get(CAPTION_COLUMN)
        for line, row in progress(table, f"reading {Path(path).name}", unit="row"):
            try:
                item = int(row[ii])
            except ValueError:
                item = parse_int(row[ii], src, line, "item_id")
            if item not in wanted_set:
                continue
            wanted_set.discard(item)
            record: dict = {"v": 1, "item": item}
            categories = [_category(row, column, name, src, line) for name, column in levels]
            while categories and categories[-1] is None:
                categories.pop()
            if categories:
                record["categories"] = categories
            if icap is not None and row[icap].strip():
                words = parse_id_list(row[icap], src, line, CAPTION_COLUMN)[:MAX_QUERY_WORDS]
                if words:
                    record["caption"] = words
            yield record


def _category(row: list[str], column: int | None, name: str, src: str, line: int) -> int | None:
    """A category id cell; None for a missing column, an empty cell, 0 or a negative id."""
    if column is None or not row[column].strip():
        return None
    value = parse_int(row[column].strip(), src, line, name)  # pandas writes "9.0" when the column had gaps
    return value if value > 0 else None


def items_of(data: KuaiSAR) -> np.ndarray:
    return np.union1d(data.rec_item, data.c_item)


def users_of(data: KuaiSAR) -> np.ndarray:
    return np.union1d(data.rec_user, data.s_user)


def profiles(path: str | Path, wanted: np.ndarray) -> Iterator[dict]:
    """Catalogue v1 profile records from user_features.csv for the users in `wanted` (the
    first row of a user wins; the PROFILE_COLUMNS the file has)."""
    src = str(path)
    wanted_set = set(wanted.tolist())
    with CsvTable(path, ("user_id",), optional=PROFILE_COLUMNS) as table:
        iu = table.columns["user_id"]
        columns = [(name, table.optional[name]) for name in PROFILE_COLUMNS if name in table.optional]
        for line, row in progress(table, f"reading {Path(path).name}", unit="row"):
            user = parse_int(row[iu], src, line, "user_id")
            if user not in wanted_set:
                continue
            wanted_set.discard(user)
            fields = {name: _field_value(row[column]) for name, column in columns}
            yield {"v": 1, "user": user, "profile": {k: v for k, v in fields.items() if v is not None}}


def _field_value(cell: str) -> int | str | None:
    """A categorical cell: an integer where it is one (pandas writes "3.0" in a column with
    gaps), else its text; None when empty."""
    text = cell.strip()
    if not text or text.lower() == "nan":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else text
