"""The fetcher's jump past a stale backlog, against a fake consumer (a unit test: the real
broker's side is benchmarks/freshness.py's shed mode): every offset is accounted for once and
in order, far fewer records are read than passed, and no fresh record is passed unread."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from stream.contract import history as hist
from stream.contract import samples as sample_codec
from stream.contract.events import Event
from stream.train.admission import Admission
from stream.train import fetch as fetch_module
from stream.train.fetch import MIN_JUMP, Shed, fetch, jump_target

NOW = 1_800_000_000.0  # the fetcher's clock, frozen: what is stale does not change while a test runs


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fetch_module, "time", SimpleNamespace(time=lambda: NOW, monotonic=time.monotonic))


@dataclass
class Record:
    offset: int
    value: bytes


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    """One partition of `ingest_ms` values, served `per_fetch` records at a time from the
    position; `seek` moves the position; the fetcher's `stop` is set once all is served."""

    def __init__(self, ingest_ms: list[int], per_fetch: int, stop: asyncio.Event) -> None:
        self.tp, self.position, self.per_fetch, self.stop, self.read = TP("sar.samples", 0), 0, per_fetch, stop, 0
        self.seeks: list[int] = []
        event = Event("e", 1, 1, "rec", (5,), 1, ())
        self.values = [sample_codec.encode(event, hist.encode(hist.History(-1, (), ())), ms) for ms in ingest_ms]

    async def getmany(self, timeout_ms: int):
        start, self.position = self.position, min(len(self.values), self.position + self.per_fetch)
        if start == len(self.values):
            self.stop.set()
            return {}
        self.read += self.position - start
        return {self.tp: [Record(o, self.values[o]) for o in range(start, self.position)]}

    def highwater(self, tp) -> int:
        return len(self.values)

    def seek(self, tp, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset


def run_fetch(ingest_ms: list[int], max_staleness_s: float | None, per_fetch: int = 500):
    async def run():
        stop, queue = asyncio.Event(), asyncio.Queue()
        consumer = FakeConsumer(ingest_ms, per_fetch, stop)
        await fetch(consumer, Admission(1 << 16, max_staleness_s), queue, stop)
        return [queue.get_nowait() for _ in range(queue.qsize())], consumer

    return asyncio.run(run())


def accounted(entries) -> list[int]:
    """The offsets the queue entries cover, in queue order (a Shed entry covers its run)."""
    out = []
    for _, offset, item in entries:
        n = item.count if isinstance(item, Shed) else 1
        out += range(offset - n + 1, offset + 1)
    return out


def even_stream(seconds: float, rate: float = 5000.0) -> list[int]:
    """The ingest times of `seconds` of records entering at an even `rate`, the last one now."""
    n = int(seconds * rate)
    return [int(NOW * 1000 - (n - 1 - i) * 1000 / rate) for i in range(n)]


def fresh_in(stream: list[int], max_staleness_s: float) -> int:
    return sum(NOW - ms / 1000 <= max_staleness_s for ms in stream)


def test_a_stale_backlog_is_passed_with_few_reads_and_every_offset_accounted_for():
    stream = even_stream(13.0)  # 13 s behind, 2 s bound: 11 s of stale records
    entries, consumer = run_fetch(stream, max_staleness_s=2.0)
    assert accounted(entries) == list(range(len(stream)))  # once each, in order
    assert consumer.read < 0.4 * len(stream)  # without the jump every record is read
    fresh = [item for _, _, item in entries if not isinstance(item, Shed)]
    assert len(fresh) == fresh_in(stream, 2.0) > 9_000  # every fresh record, none passed


def test_no_fresh_record_is_passed_unread_on_an_even_stream():
    stream = even_stream(9.6)
    entries, _ = run_fetch(stream, max_staleness_s=2.0)
    for _, offset, item in entries:
        if isinstance(item, Shed):  # a run, read or passed: its last record was stale
            assert NOW - stream[offset] / 1000 > 2.0


def test_without_a_staleness_bound_every_record_is_read_and_queued():
    stream = even_stream(8.0)
    entries, consumer = run_fetch(stream, max_staleness_s=None)
    assert consumer.read == len(stream) and not any(isinstance(item, Shed) for _, _, item in entries)


@pytest.mark.parametrize("age_s, expected", [(1.0, None), (2.5, None)])
def test_no_jump_from_a_fresh_or_barely_stale_record(age_s, expected):
    assert jump_target(100, int((NOW - age_s) * 1000), 400, NOW, 2.0) is expected


def test_a_jump_stops_short_of_the_estimated_first_fresh_record():
    # 10 s old at offset 0, end at 10,000: fresh records begin near offset 8,000
    target = jump_target(0, int((NOW - 10.0) * 1000), 10_000, NOW, 2.0)
    assert MIN_JUMP < target < 8_000 and target == pytest.approx(0.8 * 8_000, abs=2)


def test_a_jump_that_lands_on_a_fresh_record_goes_back_and_reads_every_fresh_record():
    """A quiet hour (a record a second), then a burst of 10,000 records in the last 2 s: the
    even-rate estimate puts the first fresh record near the end and the jump lands deep in
    the burst. Taken, it would pass 7,000 fresh records unread and count them as stale."""
    quiet = [int((NOW - 3600 + i) * 1000) for i in range(3500)]
    burst = [int((NOW - 1.9 + 1.9 * i / 10_000) * 1000) for i in range(10_000)]
    stream = quiet + burst
    entries, consumer = run_fetch(stream, max_staleness_s=2.0)
    assert accounted(entries) == list(range(len(stream)))
    fresh = [item for _, _, item in entries if not isinstance(item, Shed)]
    assert len(fresh) == fresh_in(stream, 2.0) == len(burst)
    assert consumer.seeks[1] < consumer.seeks[0]  # it jumped, landed on a fresh record and went back
    assert consumer.read <= len(stream) + 500  # one fetch wasted on the landing, then every record once


def test_a_jump_that_lands_on_a_stale_record_is_taken():
    stream = even_stream(13.0)
    _, consumer = run_fetch(stream, max_staleness_s=2.0)
    assert consumer.seeks and all(a < b for a, b in zip(consumer.seeks, consumer.seeks[1:]))  # never back



def test_lag_is_reported_while_a_large_fetch_waits_on_the_trainer():
    """A trainer busy with a step leaves the fetcher waiting to queue its fetch: the lag must
    be on /metrics then. It was set only once the whole fetch was queued, and a trainer
    under load showed no lag for its whole run (tests/integration/test_monitoring_live.py)."""
    from prometheus_client import CollectorRegistry, Gauge

    lag = Gauge("lag", "lag", ["partition"], registry=CollectorRegistry())

    async def run() -> float:
        stop, queue = asyncio.Event(), asyncio.Queue(maxsize=1)  # the trainer takes nothing
        consumer = FakeConsumer(even_stream(1.0), per_fetch=5000, stop=stop)
        consumer.assignment = lambda: [consumer.tp]
        task = asyncio.create_task(fetch(consumer, Admission(1 << 16, None), queue, stop, lag, trained={0: 0}))
        await asyncio.sleep(0.2)
        assert queue.full() and not task.done()  # waiting to queue the second record of 5,000
        task.cancel()
        return lag.labels("0")._value.get()

    assert asyncio.run(run()) == 5000  # the whole partition, none of it trained yet
