"""Statistics of an event stream: sizes, event types, and the four transitions.

Definitions (the simulator is calibrated against exactly these):
- behaviour: a rec event with click 1, or a search (with or without clicks). A rec exposure
  without a click is an event but not a behaviour.
- transition: two consecutive behaviours of the same user, in file order (time order for
  files our sources write): r2r, r2s, s2r, s2s (first letter = the earlier behaviour).
- a behaviour's category: that of its item (rec) or of its first clicked item (search);
  none for a search without clicks or an item with no known category. An item's category
  is level 1 of its item catalogue record (`level1_categories`), the coarsest level, which
  is what the UniSAR paper's KuaiSAR figures count.
- same-category rate of a transition type: among its transitions where both behaviours have
  a category, the share where the two categories are equal ("the previously clicked item
  shares the current item's category").
- rec clicks per search: rec behaviours / searches (the paper's "2.9 rec actions per search").
- clicks per item: rec clicks plus search clicks of each clicked item; the share of clicked
  items under CORE (5) clicks says how far the data is from the paper's 5-core KuaiSAR, where
  it is 0. Under sampled evaluation those items make most of the 99 negatives when the share
  is high, and their rows have barely been trained.
"""
from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from stream.contract.events import Rejection, validate
from stream.contract.files import open_events
from stream.data import show
from stream.data.jsonl import progress, read_catalogue

TRANSITIONS = ("r2r", "r2s", "s2r", "s2s")
CORE = 5  # the paper's k-core: items with at least 5 clicks


@dataclass
class StreamStats:
    """Accumulates statistics one event v1 dict at a time (memory: O(users + items + queries)).

    Ids are compared as text (12 and "12" are one item, as stream.contract.ids hashes them alike);
    `categories` maps item text -> category.
    """

    categories: dict[str, str] | None = None
    events: int = 0
    rec_click: int = 0
    rec_exposure: int = 0
    search_click: int = 0
    search_no_click: int = 0
    out_of_order: int = 0
    ts_min: int | None = None
    ts_max: int | None = None
    transitions: Counter = field(default_factory=Counter)
    same_pairs: Counter = field(default_factory=Counter)
    same_hits: Counter = field(default_factory=Counter)
    _users: dict[str, tuple[int, str | None, object]] = field(default_factory=dict)
    _items: set[str] = field(default_factory=set)
    _item_clicks: Counter = field(default_factory=Counter)
    _queries: set[tuple[str, ...]] = field(default_factory=set)

    def add(self, event: dict) -> None:
        """Count one (valid) event v1 dict."""
        self.events += 1
        ts = event["ts"]
        if self.ts_min is None or ts < self.ts_min:
            self.ts_min = ts
        if self.ts_max is None or ts > self.ts_max:
            self.ts_max = ts
        user = str(event["user"])
        first = None
        if event["type"] == "rec":
            first = str(event["item"])
            self._items.add(first)
            if not event["click"]:
                self.rec_exposure += 1
                self._touch(user, ts)
                return
            self.rec_click += 1
            self._item_clicks[first] += 1
            kind = "r"
        else:
            query = event["query"]
            self._queries.add(tuple(query.lower().split()) if isinstance(query, str) else tuple(map(str, query)))
            clicks = event.get("clicks") or ()
            if clicks:
                self.search_click += 1
                first = str(clicks[0])
                self._items.update(map(str, clicks))
                self._item_clicks.update(map(str, clicks))
            else:
                self.search_no_click += 1
            kind = "s"
        category = None
        if self.categories is not None and first is not None:
            category = self.categories.get(first)
        before = self._users.get(user)
        if before is not None:
            last_ts, last_kind, last_category = before
            if ts < last_ts:
                self.out_of_order += 1
            if last_kind is not None:
                name = f"{last_kind}2{kind}"
                self.transitions[name] += 1
                if category is not None and last_category is not None:
                    self.same_pairs[name] += 1
                    self.same_hits[name] += category == last_category
        self._users[user] = (ts, kind, category)

    def _touch(self, user: str, ts: int) -> None:
        before = self._users.get(user)
        if before is None:
            self._users[user] = (ts, None, None)
            return
        if ts < before[0]:
            self.out_of_order += 1
        self._users[user] = (ts, before[1], before[2])

    def result(self) -> dict:
        searches = self.search_click + self.search_no_click
        out = {
            "events": self.events,
            "users": len(self._users),
            "items": len(self._items),
            "queries": len(self._queries),
            "rec_click": self.rec_click,
            "rec_exposure": self.rec_exposure,
            "search_with_clicks": self.search_click,
            "search_without_clicks": self.search_no_click,
            "behaviours": self.rec_click + searches,
            "rec_clicks_per_search": self.rec_click / searches if searches else None,
            "search_click_share": self.search_click / searches if searches else None,
            "rec_exposure_share": self.rec_exposure / (self.rec_exposure + self.rec_click)
            if self.rec_exposure + self.rec_click
            else None,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
            "out_of_order": self.out_of_order,
            "transitions": {name: self.transitions[name] for name in TRANSITIONS},
            "clicked_items": len(self._item_clicks),
            "clicked_items_under_core": sum(n < CORE for n in self._item_clicks.values()),
            "clicks_per_item_median": statistics.median(self._item_clicks.values()) if self._item_clicks else None,
        }
        if self.categories is not None:
            out["same_category"] = {
                name: (self.same_hits[name] / self.same_pairs[name] if self.same_pairs[name] else None)
                for name in TRANSITIONS
            }
            out["same_category_pairs"] = {name: self.same_pairs[name] for name in TRANSITIONS}
        return out


def level1_categories(path: str | Path) -> dict[str, str]:
    """item (as text) -> its level-1 category (as text), from an item catalogue file; items
    whose level 1 is unknown are left out (a later record of an item replaces the earlier)."""
    out: dict[str, str] = {}
    for _line, obj, _record in read_catalogue(path):
        if "item" not in obj:  # a user profile
            continue
        item, levels = str(obj["item"]), obj.get("categories") or [None]
        if levels[0] is None:
            out.pop(item, None)
        else:
            out[item] = str(levels[0])
    return out


def compute(events: Iterable[dict], categories: dict[str, str] | None = None) -> dict:
    stats = StreamStats(categories)
    for event in events:
        stats.add(event)
    return stats.result()


def file_stats(path: str | Path, categories: dict[str, str] | None = None, keep_invalid: int = 5) -> dict:
    """Statistics of an events file (JSONL, .jsonl.gz or parquet). Lines that are not valid
    event v1 are counted (and the first few reported with their line numbers), not fatal."""
    stats = StreamStats(categories)
    invalid: list[str] = []
    n_invalid = 0
    name = Path(path).name
    with open_events(path) as source:
        for line_no, value in progress(source.values(), f"reading {name}", unit="line"):
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                obj, reason = None, f"decode: expected JSON, got {show(value[:40])} ({exc.msg})"
            if obj is not None:
                checked = validate(obj)
                if isinstance(checked, Rejection):
                    reason = checked.reason
                else:
                    stats.add(obj)
                    continue
            n_invalid += 1
            if len(invalid) < keep_invalid:
                invalid.append(f"line {line_no}: {reason}")
    result = stats.result()
    result["invalid"] = n_invalid
    result["invalid_examples"] = invalid
    return result


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _when(ms: int | None) -> str:
    if ms is None:
        return "n/a"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_report(result: dict, targets: dict | None = None) -> str:
    """Human-readable report; `targets` (simulator) adds a 'target' column."""
    r = result
    t = targets or {}

    def vs(key: str, value: str) -> str:
        return f"{value:>8}   (target {t[key]})" if key in t else value

    lines = [
        f"events                {r['events']:,}",
        f"  rec click           {r['rec_click']:,}",
        f"  rec exposure        {r['rec_exposure']:,}   (no click; {_pct(r['rec_exposure_share'])} of rec events)",
        f"  search with clicks  {r['search_with_clicks']:,}",
        f"  search, no click    {r['search_without_clicks']:,}",
        f"users {r['users']:,}   items {r['items']:,}   queries {r['queries']:,}",
        f"time                  {_when(r['ts_min'])} .. {_when(r['ts_max'])}",
        f"behaviours            {r['behaviours']:,}",
    ]
    ratio = r["rec_clicks_per_search"]
    lines.append("rec clicks / search   " + vs("rec_clicks_per_search", "n/a" if ratio is None else f"{ratio:.2f}"))
    lines.append("searches with click   " + vs("search_click_share", _pct(r["search_click_share"])))
    lines.append("transitions           " + "   ".join(f"{n} {r['transitions'][n]:,}" for n in TRANSITIONS))
    if r["clicked_items"]:
        under = r["clicked_items_under_core"]
        lines.append(f"clicks per item       median {r['clicks_per_item_median']:g}; {under:,} of {r['clicked_items']:,} "
                     f"clicked items ({_pct(under / r['clicked_items'])}) have fewer than {CORE} (5-core data: none)")
    if "same_category" in r:
        for name in TRANSITIONS:
            pairs = r["same_category_pairs"][name]
            lines.append(
                f"same category {name}     " + vs(f"same_{name}", _pct(r["same_category"][name])) + f"   n={pairs:,}"
            )
    else:
        lines.append("same category         n/a (no item catalogue)")
    if r.get("invalid"):
        lines.append(f"invalid events        {r['invalid']:,} (not counted above)")
        lines.extend(f"  {example}" for example in r.get("invalid_examples", []))
    if r["out_of_order"]:
        lines.append(f"out of time order     {r['out_of_order']:,} events (earlier than the user's previous one)")
    return "\n".join(lines)
