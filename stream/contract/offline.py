"""The stream's step, run over a finite event source in memory: the one code path that
`unisar fit`, tests and benchmarks use to turn events into histories and samples exactly
as the worker would (same validation, same history step, same sample codec)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from stream.contract import history as hist
from stream.contract import samples
from stream.contract.samples import decode
from stream.contract.events import Event, Rejection, parse_event


@dataclass
class OfflineStream:
    """Replays raw event values in order; each value's position plays the Kafka offset."""

    limits: hist.Limits = hist.Limits()
    histories: dict[int, bytes] = field(default_factory=dict)
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)

    def feed(self, raw_values: Iterable[bytes]) -> Iterator[bytes]:
        """Yield encoded samples; histories and rejections accumulate on self."""
        for offset, raw in enumerate(raw_values):
            event = parse_event(raw)
            if isinstance(event, Rejection):
                self.rejected.append((offset, event))
                continue
            yield from self.feed_event(event, offset)

    def feed_event(self, event: Event, offset: int, ingest_ms: int = 0) -> Iterator[bytes]:
        before = self.histories.get(event.user, hist.EMPTY)
        after, sample = samples.step(before, event, offset, self.limits, ingest_ms)
        if after is not None:
            self.histories[event.user] = after
        if sample is not None:
            yield sample


def read_jsonl_values(path: str) -> Iterator[bytes]:
    """Raw lines of a JSONL event file (blank lines skipped), as the producer would send them."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def split_by_time(path: str, last_fraction: float) -> tuple[int, list]:
    """For a time-ordered event file: (number of leading lines to replay, decoded samples of
    the trailing `last_fraction` of its lines). The held-out samples carry the histories the
    stream would have built from everything before them."""
    from stream.contract import samples as sample_codec

    if not 0.0 < last_fraction < 1.0:
        raise ValueError(f"held-out fraction: expected a number in (0, 1), got {last_fraction}")
    values = list(read_jsonl_values(path))
    cutoff = int(len(values) * (1.0 - last_fraction))
    stream = OfflineStream()
    held: list = []
    for offset, raw in enumerate(values):
        event = parse_event(raw)
        if isinstance(event, Rejection):
            continue
        for encoded in stream.feed_event(event, offset):
            if offset >= cutoff:
                held.append(sample_codec.decode(encoded))
    return cutoff, held


def load_samples(path: str) -> tuple[list, list]:
    """Replay a JSONL event file through the stream's step. Returns (samples, rejections)."""
    stream = OfflineStream()
    samples = [decode(raw) for raw in stream.feed(read_jsonl_values(path))]
    return samples, stream.rejected


def split_holdout(samples: list, fraction: float) -> tuple[list, list]:
    """(train, test): the latest `fraction` of each user's samples (rounded down) is test."""
    by_user: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_user[s.user].append(i)
    test: set[int] = set()
    for idx in by_user.values():
        idx.sort(key=lambda i: samples[i].ts)
        test.update(idx[len(idx) - int(len(idx) * fraction) :])
    return [s for i, s in enumerate(samples) if i not in test], [s for i, s in enumerate(samples) if i in test]
