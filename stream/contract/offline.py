"""The stream's step, run over a finite event source in memory: the one code path that
`unisar fit`, `eval`, `train --heldout`, the demo, tests and benchmarks use to turn events
into histories and samples exactly as the worker would (same validation, same history step,
same sample codec); and the one held-out rule they all share (`split_heldout`).

A file is replayed in time order (stream.contract.timeorder: sorted by `ts`, ties in file
order), whatever order it was written in: a log written sorted by user replays as the stream
would have seen it, and a user's history only ever holds earlier events. The replayed
position plays the Kafka offset (the k-th event replayed gets the k-th position among the
file's events, so a file already in order keeps its offsets and offsets always rise)."""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.contract import history as hist
from stream.contract import samples
from stream.contract.events import Event, Rejection, parse_event
from stream.contract.files import read_items, read_values
from stream.contract.items import CatalogueRecord, feature_tokens
from stream.contract.samples import Sample, decode
from stream.contract.timeorder import time_order


@dataclass
class OfflineStream:
    """Replays raw event values in order; each value's position plays the Kafka offset."""

    limits: hist.Limits = hist.Limits()
    histories: dict[int, bytes] = field(default_factory=dict)
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)
    next_offset: int = 0  # where a later file's replay goes on (offsets only rise, as in Kafka)
    latest: dict[int, int] = field(default_factory=dict)  # each user's latest ts replayed
    late: int = 0  # events earlier than their user's latest one replayed before them
    reordered: int = 0  # events of the files replayed that came after a later one (sorted into place)

    def feed(self, raw_values: Iterable[bytes]) -> Iterator[bytes]:
        """Yield encoded samples; histories and rejections accumulate on self."""
        for offset, raw in enumerate(raw_values):
            event = parse_event(raw)
            if isinstance(event, Rejection):
                self.rejected.append((offset, event))
                continue
            yield from self.feed_event(event, offset)

    def feed_event(self, event: Event, offset: int, ingest_ms: int = 0) -> Iterator[bytes]:
        latest = self.latest.get(event.user)
        if latest is not None and event.ts < latest:
            self.late += 1  # its history holds later events: what `eval --history` refuses
        else:
            self.latest[event.user] = event.ts
        before = self.histories.get(event.user, hist.EMPTY)
        after, sample = samples.step(before, event, offset, self.limits, ingest_ms)
        if after is not None:
            self.histories[event.user] = after
        if sample is not None:
            yield sample


def load_samples(path: str | Path, progress=None,
                 stream: OfflineStream | None = None) -> tuple[list[Sample], list[tuple[int, Rejection]]]:
    """Replay an event file (JSONL, .jsonl.gz or parquet: stream.contract.files) through the
    stream's step, in time order (ties: file order). Returns (decoded samples in replay order,
    rejections as (line number, Rejection)). A file that cannot be read raises DataError or
    SourceUnavailable. `progress` wraps the iterable of (line, value) pairs, e.g. a tqdm bar.
    `stream`: go on from the histories an earlier replay left (an earlier file replayed into it
    first), so a later file's samples carry each user's whole history; `stream.late` then
    counts the later file's events that are earlier than their user's last event before."""
    values = read_values(path)
    return _replay(values if progress is None else progress(values), stream)[:2]


class _Parsed(NamedTuple):
    events: list  # per value: its Event, or None when it was rejected
    rejected: list[tuple[int, Rejection]]  # (line, why), in file order
    order: np.ndarray  # positions of the values in time order (stream.contract.timeorder)
    late: int  # events earlier than one before them in the file


def _parse_in_time_order(values) -> _Parsed:
    events: list = []
    rejected: list[tuple[int, Rejection]] = []
    for line, raw in values:
        event = parse_event(raw)
        if isinstance(event, Rejection):
            rejected.append((line, event))
            event = None
        events.append(event)
    valid = np.fromiter((e is not None for e in events), bool, len(events))
    ts = np.fromiter((0 if e is None else e.ts for e in events), np.int64, len(events))
    order, late = time_order(ts, valid)
    return _Parsed(events, rejected, order, late)


def in_time_order(path: str | Path) -> list[tuple[int, bytes]]:
    """An event file's (line, raw value) pairs in time order (ties and invalid lines as
    stream.contract.timeorder places them), for a replay into the stream."""
    values = list(read_values(path))
    return [values[i] for i in _parse_in_time_order(values).order]


def _replay(values, stream: OfflineStream | None = None, parsed: _Parsed | None = None
            ) -> tuple[list[Sample], list[tuple[int, Rejection]], list[int]]:
    """(samples, rejections, the rank in `parsed.order` of each sample's event)."""
    stream = OfflineStream() if stream is None else stream
    parsed = _parse_in_time_order(values) if parsed is None else parsed
    base = stream.next_offset
    # the k-th event replayed takes the k-th position among the events: offsets rise
    offsets = iter(i for i, e in enumerate(parsed.events) if e is not None)
    samples: list[Sample] = []
    ranks: list[int] = []
    for rank, position in enumerate(parsed.order.tolist()):
        event = parsed.events[position]
        if event is None:
            continue
        for encoded in stream.feed_event(event, base + next(offsets)):
            samples.append(decode(encoded))
            ranks.append(rank)
    stream.next_offset = base + len(parsed.events)
    stream.reordered += parsed.late
    return samples, parsed.rejected, ranks


# ---------------------------------------------------------------- the held-out rule
#
# One rule for `unisar fit`, `eval`, `train --heldout` and the demo (flag `--heldout-last F`):
# the latest F of the samples in event time, for everyone at once (the paper's last-day
# split: test = the latest slice of time). Samples are ordered by `ts`, ties by file order,
# never by file order alone. `--heldout-per-user` (fit and eval) keeps the older rule: the
# latest F of each user's samples. `unisar fit --validation V` carves its validation samples
# from the training part by the same rule (`split_validation`).

GLOBAL = "global-time"
PER_USER = "per-user"
RULES = (GLOBAL, PER_USER)


def describe(fraction: float, per_user: bool = False) -> str:
    """The rule in words, for output: 'the latest 0.1 of all samples in event time'."""
    if per_user:
        return f"the latest {fraction:g} of each user's samples (per-user rule)"
    return f"the latest {fraction:g} of all samples in event time"


def heldout_indices(samples: list[Sample], fraction: float, per_user: bool = False) -> set[int]:
    """Positions in `samples` (in replay order) of the held-out ones: the latest
    floor(n * fraction) by (ts, position), of all n samples or (per_user) of each user's."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"held-out fraction: expected a number in [0, 1], got {fraction}")
    groups: list[list[int]]
    if per_user:
        by_user: dict[int, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            by_user[s.user].append(i)
        groups = list(by_user.values())
    else:
        groups = [list(range(len(samples)))]
    test: set[int] = set()
    for idx in groups:
        k = int(len(idx) * fraction + 1e-9)  # floor, without 0.29 * 100 = 28.999...
        if k:
            idx.sort(key=lambda i: (samples[i].ts, i))
            test.update(idx[len(idx) - k :])
    return test


def split_heldout(samples: list[Sample], fraction: float, per_user: bool = False) -> tuple[list, list]:
    """(train, test), each in the order of `samples`: test is the latest `fraction` of the
    samples in event time (ties: their order), of all of them or, with `per_user`, of each user's."""
    test = heldout_indices(samples, fraction, per_user)
    return [s for i, s in enumerate(samples) if i not in test], [s for i, s in enumerate(samples) if i in test]


def split_validation(samples: list[Sample], heldout: float, validation: float,
                     per_user: bool = False) -> tuple[list, list, list]:
    """(train, validation, test) of `unisar fit`: test is `split_heldout(samples, heldout,
    per_user)[1]`, whatever `validation` is (so `unisar eval` re-derives it from the file and
    the flag alone); validation is the latest `validation` of the rest, by the same rule."""
    rest, test = split_heldout(samples, heldout, per_user)
    train, valid = split_heldout(rest, validation, per_user)
    return train, valid, test


def heldout_samples(path: str | Path, fraction: float) -> list[Sample]:
    """`unisar train --heldout FILE --heldout-last F`: the held-out samples of an event file
    (the global rule). Their histories are those the stream builds from everything before them."""
    samples, _ = load_samples(path)
    return split_heldout(samples, fraction)[1]


def load_catalogue(path: str | Path) -> tuple[list[CatalogueRecord], list[tuple[int, Rejection]]]:
    """The valid records of a catalogue file (items and user profiles), and (line, why) of the
    invalid ones."""
    records, rejected = [], []
    for line, record in read_items(path):
        (rejected.append((line, record)) if isinstance(record, Rejection) else records.append(record))
    return records, rejected


def table_sizes(samples: list[Sample], headroom: float = 0.25,
                catalogue: Iterable[CatalogueRecord] = ()) -> dict[str, int]:
    """Rows for each id table ("users", "items", "words") that hold every distinct id of
    `samples` (and every feature token of `catalogue`: they share the word table) with
    `headroom` to spare, so that tables sized from the data never recycle a row within one
    pass over it."""
    users, items, words = set(), set(), set()
    for record in catalogue:
        words.update(feature_tokens(record))
    words.discard(0)
    for s in samples:
        users.add(s.user)
        items.update(s.items)
        words.update(s.query)
        items.update(b.item for b in s.history.rec)
        for b in s.history.search:
            words.update(b.query)
            items.update(b.clicks)
    return {kind: int(len(ids) * (1 + headroom)) + 16 for kind, ids in
            (("users", users), ("items", items), ("words", words))}


class Replay(NamedTuple):
    values: list[tuple[int, bytes]]  # (line, raw value) pairs to stream, in time order
    heldout: list[Sample]
    sizes: dict[str, int]  # table_sizes of all the file's samples


def heldout_replay(path: str | Path, fraction: float) -> Replay:
    """The demo's split of an event file, read once: the (line, raw value) pairs to stream,
    the held-out samples, and the id tables' sizes for the whole file. The held-out samples are
    those of `heldout_samples(path, fraction)`; the pairs are every line of the file in time
    order (ties: file order), up to the event of the first held-out sample, so nothing of the
    held-out time is trained on. Invalid lines stay in (after the event before them in the
    file), for the producer to report."""
    values = list(read_values(path))
    parsed = _parse_in_time_order(values)
    samples, _, ranks = _replay(values, parsed=parsed)
    test = heldout_indices(samples, fraction)
    sizes = table_sizes(samples)
    # samples are in replay order, so the held-out ones (the latest by (ts, position)) are its tail
    cut = min((ranks[i] for i in test), default=len(values))
    replay = [values[p] for rank, p in enumerate(parsed.order.tolist())
              if rank < cut or parsed.events[p] is None]
    return Replay(replay, [s for i, s in enumerate(samples) if i in test], sizes)


def heldout_rule(fit_record: dict) -> tuple[float | None, bool]:
    """(fraction, per_user) that `unisar fit` recorded in a checkpoint's "fit" record.
    Checkpoints written before the global rule recorded only `holdout_last`: per-user."""
    if "heldout_last" in fit_record:
        return fit_record["heldout_last"], fit_record.get("heldout_rule") == PER_USER
    if "holdout_last" in fit_record:
        return fit_record["holdout_last"], True
    return None, False
