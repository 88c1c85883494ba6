"""k-core filtering of any event stream: the UniSAR paper's preprocessing for event files.

The rule is the one `kuaisar.filter_users_items` applies to KuaiSAR's columns (which stays,
vectorised, for the tens of millions of rows of the full data set):
- a user needs >= k behaviours (rec clicks + searches), and with `both_behaviours` at least
  one rec click and one search;
- an item needs >= k clicks (rec clicks + search clicks); an item that is only ever exposed
  has none;
- repeated until nothing changes. Every event of a dropped user goes, and every rec event
  (exposures too) of a dropped item; a kept user's search keeps its query and loses only
  the dropped items among its clicks.
A min_core of 1 or less sets no count; both_behaviours must then be on, or there is
nothing to filter.
Ids are compared as text, as everywhere in stream.data. Memory: the events are held once
(about 1 KB per event as Python dicts). The catalogue follows the kept items and users
(`kept_records`): a dropped item's record, or a dropped user's profile, goes with it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class CoreResult:
    events: list[dict]
    rounds: int  # passes that dropped something (0: the input was a k-core already)
    kept_users: frozenset[str]
    kept_items: frozenset[str]
    dropped_events: int
    dropped_clicks: int  # search clicks removed from kept searches

    @property
    def users(self) -> int:
        return len(self.kept_users)

    @property
    def items(self) -> int:
        return len(self.kept_items)


def k_core(events: Iterable[dict], min_core: int, both_behaviours: bool = False) -> CoreResult:
    if min_core <= 1 and not both_behaviours:
        raise ValueError(f"nothing to filter: expected min_core >= 2 or both_behaviours, got {min_core} and False")
    events = list(events)
    users = {str(e["user"]) for e in events}
    item_filter = min_core > 1
    items = {str(e["item"]) for e in events if e["type"] == "rec"}
    items.update(str(c) for e in events if e["type"] == "search" for c in e.get("clicks") or ())
    rounds = 0  # passes that dropped something
    while True:
        behaviours, clicks = Counter(), Counter()
        rec_users, search_users = set(), set()
        for e in events:
            user = str(e["user"])
            if user not in users:
                continue
            if e["type"] == "rec":
                item = str(e["item"])
                if e["click"] and item in items:
                    behaviours[user] += 1
                    clicks[item] += 1
                    rec_users.add(user)
            else:
                behaviours[user] += 1
                search_users.add(user)
                clicks.update(c for c in map(str, e.get("clicks") or ()) if c in items)
        kept_users = {u for u, n in behaviours.items() if n >= min_core}
        if both_behaviours:
            kept_users &= rec_users & search_users
        kept_items = {i for i, n in clicks.items() if n >= min_core} if item_filter else items
        if kept_users == users and kept_items == items:
            break
        rounds += 1
        users, items = kept_users, kept_items

    out: list[dict] = []
    dropped_clicks = 0
    for e in events:
        if str(e["user"]) not in users:
            continue
        if e["type"] == "rec":
            if str(e["item"]) in items:
                out.append(e)
            continue
        before = e.get("clicks") or []
        kept = [c for c in before if str(c) in items]
        dropped_clicks += len(before) - len(kept)
        out.append(e if len(kept) == len(before) else {**e, "clicks": kept})
    return CoreResult(out, rounds, frozenset(users), frozenset(items), len(events) - len(out), dropped_clicks)


def kept_records(records: Iterable[dict], kept_items: frozenset[str], kept_users: frozenset[str]) -> Iterator[dict]:
    """The catalogue records (stream.contract.items) of the kept items and users, in their order."""
    return (record for record in records
            if (str(record["item"]) in kept_items if "item" in record else str(record["user"]) in kept_users))
