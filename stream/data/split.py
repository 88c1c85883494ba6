"""Train / validation / test splits by time, written as files beside the events.

Two rules, both deterministic (same input and arguments -> the same files):
- global time cuts: an event with ts >= test_from is test, else ts >= valid_from is
  validation, else training. The cuts come from
  * calendar days (`days`): the last day of the data (UTC+tz_hours) is test, the day before
    validation (the UniSAR paper's KuaiSAR split), or
  * fractions of events (`fractions`): the cuts are the timestamps at those quantiles of all
    event times (events sharing the cut timestamp all go to the later split), or
  * explicit timestamps.
  Every user's events stay in time order across the three files, and nothing in training
  happens after anything in validation or test: no leakage through time.
- per-user last N (`user`): a user's last `test_n` behaviours (rec clicks and searches) are
  test, the `valid_n` before them validation, the rest training (leave-one-out when 1 and 1).
  A rec exposure without a click goes with the next behaviour of its user (after the user's
  last behaviour: test). A user with no more than valid_n + test_n behaviours stays wholly in
  training (no cold-start users in evaluation).

Files: PREFIX.train.jsonl, PREFIX.valid.jsonl, PREFIX.test.jsonl (all in time order) and
PREFIX.split.json recording the rule, the cut points and the counts.

Time order: the input is read in time order (`TimeOrdered`: sorted by ts, ties in file
order), so each output is in time order and the per-user rule counts each user's behaviours
in time, whatever order the input was written in (a log sorted by user, say). A file already
in time order is streamed from disk; one that is not is held in memory as compact JSON (about
the size of the file) and sorted; the manifest records how many events were out of order.
"""
from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from stream.contract.timeorder import time_order
from stream.data.jsonl import atomic_path, progress

DAY_MS = 86_400_000
SPLITS = ("train", "valid", "test")


def day_start_ms(ts_ms: int, tz_hours: float) -> int:
    """Epoch ms of the start of the calendar day (UTC+tz_hours) holding ts_ms."""
    offset = int(tz_hours * 3_600_000)
    return (ts_ms + offset) // DAY_MS * DAY_MS - offset


@dataclass(frozen=True)
class TimeCuts:
    valid_from: int
    test_from: int

    def __post_init__(self) -> None:
        if self.valid_from > self.test_from:
            raise ValueError(f"valid_from ({self.valid_from}) must not be after test_from ({self.test_from})")

    def assign(self, event: dict) -> str:
        ts = event["ts"]
        return "test" if ts >= self.test_from else "valid" if ts >= self.valid_from else "train"

    @classmethod
    def by_days(cls, ts_max: int, tz_hours: float = 0.0, valid_days: int = 1, test_days: int = 1) -> TimeCuts:
        """The last `test_days` calendar days are test, the `valid_days` before validation."""
        test_from = day_start_ms(ts_max, tz_hours) - (test_days - 1) * DAY_MS
        return cls(test_from - valid_days * DAY_MS, test_from)

    @classmethod
    def by_fractions(cls, ts: np.ndarray, valid: float, test: float) -> TimeCuts:
        """Cuts at the event-time quantiles 1-valid-test and 1-test."""
        if not (0 <= valid and 0 <= test and valid + test < 1):
            raise ValueError(f"need valid, test >= 0 and valid + test < 1, got {valid}, {test}")
        if ts.size == 0:
            return cls(0, 0)
        ordered = np.sort(ts)

        def cut(share: float) -> int:
            if share <= 0:
                return int(ordered[-1]) + 1
            return int(ordered[min(ts.size - 1, int(np.floor(ts.size * (1 - share))))])

        return cls(cut(valid + test), cut(test))


class LastN:
    """Per-user last-N assignment; `behaviours` is each user's number of behaviours."""

    def __init__(self, behaviours: dict, valid_n: int = 1, test_n: int = 1) -> None:
        self.behaviours = behaviours
        self.valid_n, self.test_n = valid_n, test_n
        self._seen: Counter = Counter()

    @staticmethod
    def is_behaviour(event: dict) -> bool:
        return event["type"] == "search" or event.get("click") == 1

    def assign(self, event: dict) -> str:
        user = event["user"]
        position = self._seen[user]  # behaviours of this user before this event
        if self.is_behaviour(event):
            self._seen[user] = position + 1
        total = self.behaviours.get(user, 0)
        if total <= self.valid_n + self.test_n:
            return "train"
        if position >= total - self.test_n:
            return "test"
        if position >= total - self.test_n - self.valid_n:
            return "valid"
        return "train"

    @classmethod
    def count(cls, events: Iterable[dict]) -> dict:
        counts: Counter = Counter()
        for event in events:
            if cls.is_behaviour(event):
                counts[event["user"]] += 1
        return dict(counts)


class TimeOrdered:
    """The events of `read()` (a fresh iterable of event dicts on each call) in time order,
    to iterate as many times as a rule needs: `ts` (in time order) and `late` (events that came
    after a later one in the input) are known from the first read. An input in time order is
    read again on each iteration; otherwise its events are kept as compact JSON and sorted."""

    def __init__(self, read: Callable[[], Iterable[dict]]) -> None:
        self._read = read
        ts = np.fromiter((e["ts"] for e in read()), dtype=np.int64)
        order, self.late = time_order(ts)
        self.ts = ts[order]
        self._sorted: list[bytes] | None = None
        if self.late:
            kept = [orjson.dumps(e) for e in read()]
            self._sorted = [kept[i] for i in order.tolist()]

    def __call__(self) -> Iterable[dict]:
        if self._sorted is None:
            return self._read()
        return map(orjson.loads, self._sorted)


def split_paths(prefix: str | Path, suffix: str = ".jsonl") -> dict[str, Path]:
    prefix = Path(prefix)
    return {name: prefix.with_name(f"{prefix.name}.{name}{suffix}") for name in SPLITS}


def write_splits(
    events: Iterable[dict],
    prefix: str | Path,
    assign: Callable[[dict], str],
    manifest: dict | None = None,
    suffix: str = ".jsonl",
    total: int | None = None,
) -> dict[str, int]:
    """Write each event to PREFIX.<split><suffix>; write PREFIX.split.json; return counts."""
    paths = split_paths(prefix, suffix)
    counts = {name: 0 for name in SPLITS}
    dumps = orjson.dumps
    with ExitStack() as stack:
        handles = {}
        for name, path in paths.items():
            tmp = stack.enter_context(atomic_path(path))
            opener = gzip.open if suffix.endswith(".gz") else open
            handles[name] = stack.enter_context(opener(tmp, "wb"))
        for event in progress(events, f"splitting into {Path(prefix).name}.*", total):
            name = assign(event)
            counts[name] += 1
            handles[name].write(dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        for fh in handles.values():
            fh.close()
    record = {**(manifest or {}), "counts": counts, "files": {k: str(v) for k, v in paths.items()}}
    prefix = Path(prefix)
    with atomic_path(prefix.with_name(f"{prefix.name}.split.json")) as tmp:
        tmp.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return counts
