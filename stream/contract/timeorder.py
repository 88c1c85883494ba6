"""Time order of an event file: how far a file is from it, and the order that restores it.

A stream sees events in time order; a file need not be in it (a log written sorted by user,
files concatenated, a merge). Every tool that needs time order either replays the file in
`time_order` (sorted by `ts`, ties keep file order: a stable sort, so a file already in order
is left exactly as it is) or refuses with the count `late` and says how to fix it:
- `unisar fit`, `eval`, `train --heldout` and the demo sort (stream.contract.offline);
  `eval --history` refuses a later file with events earlier than their user's history;
- `unisar data split` sorts what it writes (stream.data.split.TimeOrdered);
- `unisar produce` refuses unless told `--sort` or `--keep-order`.

`late` counts the events that come after a later one in the file (a ts below the largest ts
before it): 0 for a file in time order, and the number a tool reports when it is not.

An invalid line (no valid ts) keeps its place after the valid event before it, so a tool that
reports invalid lines still finds them among their neighbours.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from stream.contract.events import Rejection, parse_event

NO_TS = np.iinfo(np.int64).min


class TimeOrder(NamedTuple):
    order: np.ndarray  # positions in the file, in time order
    late: int  # events earlier than one before them in the file


def late_events(ts: np.ndarray) -> int:
    """How many of `ts` (in file order) are below the largest value before them."""
    ts = np.asarray(ts, np.int64)
    if ts.size < 2:
        return 0
    return int((ts[1:] < np.maximum.accumulate(ts)[:-1]).sum())


def time_order(ts: np.ndarray, valid: np.ndarray | None = None) -> TimeOrder:
    """The positions of `ts` sorted by time, ties in file order, and how many events were late.
    `valid` (bool, same shape) marks the positions that are events; the others (invalid lines)
    follow the valid event before them (or lead, before any), and are not counted as late."""
    ts = np.asarray(ts, np.int64)
    if valid is None or bool(np.all(valid)):
        return TimeOrder(np.argsort(ts, kind="stable"), late_events(ts))
    valid = np.asarray(valid, bool)
    # forward-fill: each position's key is the ts of the last valid position at or before it
    last = np.maximum.accumulate(np.where(valid, np.arange(ts.size), -1))
    key = np.where(last >= 0, ts[np.maximum(last, 0)], NO_TS)
    return TimeOrder(np.argsort(key, kind="stable"), late_events(ts[valid]))


def event_ts(raw: bytes) -> int | None:
    """The `ts` of a raw value if it is a valid event v1 (stream.contract.events), else None:
    an invalid line has no place in time, and is never counted late."""
    event = parse_event(raw)
    return None if isinstance(event, Rejection) else event.ts


class LateCounter:
    """Counts late events one at a time, for a source read once (standard input)."""

    def __init__(self) -> None:
        self.latest: int | None = None
        self.late = 0

    def see(self, ts: int | None) -> None:
        if ts is None:
            return
        if self.latest is not None and ts < self.latest:
            self.late += 1
        else:
            self.latest = ts
