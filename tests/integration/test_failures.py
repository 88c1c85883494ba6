"""Failure and scale-out: kill -9 mid-replay, and two workers sharing the partitions."""
from __future__ import annotations

import random
import threading
import time

import orjson
import pytest
from eventgen import valid_events
from kafkatools import committed_total, read_all, wait_until_caught_up
from test_pipeline import ENGINES, metric, offline, produce, scrape, stored_histories, without_offsets

from stream.contract import samples
from stream.kafka import ensure_topics_sync
from stream.ingest.producer import EventProducer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class GatedReplay(threading.Thread):
    """Produces `values` at `rate` in consecutive segments; segment i starts only after `release(i)`.
    The gates let the test aim every kill at a segment that is still being produced."""

    def __init__(self, settings, values, segments: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.rate = settings, rate
        size = -(-len(values) // segments)
        self.bounds = [(i * size, min(len(values), (i + 1) * size)) for i in range(segments)]
        self.values = values
        self.gates = [threading.Event() for _ in range(segments)]
        self.start()

    def release(self, segment: int) -> None:
        self.gates[segment].set()

    def run(self) -> None:
        with EventProducer(self.settings) as producer:
            for gate, (lo, hi) in zip(self.gates, self.bounds):
                gate.wait()
                start = time.monotonic()
                for i in range(lo, hi):
                    producer.send_raw(*self.values[i])
                    if i % 200 == 0:
                        time.sleep(max(0.0, start + (i - lo) / self.rate - time.monotonic()))


@ENGINES
def test_kill_9_three_times_during_replay_loses_nothing_and_applies_nothing_twice(settings, worker_factory, engine):
    rng = random.Random(11)
    events = valid_events(20_000, users=800, seed=5)
    values = [(str(e["user"]).encode(), orjson.dumps(e)) for e in events]
    ensure_topics_sync(settings)
    # Small polls and frequent commits put many commit boundaries inside the replay.
    tuning = dict(max_poll_records=300, commit_interval_s=0.05, engine=engine)
    rate = 2_500
    replay = GatedReplay(settings, values, segments=4, rate=rate)

    # A worker starts after the dead one's session times out (about 10 s), so the replay pauses
    # between segments: otherwise it would end before the later kills and they would hit an idle worker.
    for segment in range(3):
        lo, hi = replay.bounds[segment]
        worker = worker_factory(settings, **tuning)
        worker.wait_assigned()
        replay.release(segment)
        # Kill once the worker has committed part of this segment. When the producer passed that
        # point, at least 40% of the segment (0.8 s at this rate) was still to come: far more than
        # the worker's commit lag plus the random delay, so the kill lands mid-replay.
        target = lo + rng.uniform(0.2, 0.6) * (hi - lo)
        deadline = time.monotonic() + 120
        while committed_total(settings) < target:
            assert worker.alive(), "worker died on its own"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.2))  # land anywhere: mid-batch, mid-commit
        worker.kill()
        assert committed_total(settings) < hi, f"kill {segment + 1} came after segment {segment} was committed"

    replay.release(3)
    worker = worker_factory(settings, **tuning)
    worker.wait_assigned()  # a SIGTERM before its handler is in place would kill it outright
    replay.join()
    wait_until_caught_up(settings, len(values), procs=[worker])
    assert worker.stop() == 0

    expected_histories, expected_samples = offline(events)
    assert without_offsets(stored_histories(settings.state_dir)) == without_offsets(expected_histories)
    emitted = [samples.decode(r.value) for r in read_all(settings, settings.samples_topic)]
    # At least once: every sample is there; a repeat after a crash carries the same content.
    assert {s.event_id for s in emitted} == expected_samples.keys()
    for s in emitted:
        want = expected_samples[s.event_id]
        assert (s.items, s.label, s.history.rec, s.history.search) == (
            want.items, want.label, want.history.rec, want.history.search)


@ENGINES
def test_two_workers_split_partitions_and_moved_partitions_bring_their_histories(settings, worker_factory, tmp_path,
                                                                                 engine):
    events = valid_events(9_000, users=300, seed=9)
    values = [(str(e["user"]).encode(), orjson.dumps(e)) for e in events]
    ensure_topics_sync(settings)
    first, second, third = values[:3000], values[3000:6000], values[6000:]

    a = worker_factory(settings, state_dir=str(tmp_path / "a"), engine=engine)
    produce(settings, first)
    wait_until_caught_up(settings, 3000, procs=[a])
    b = worker_factory(settings, state_dir=str(tmp_path / "b"), engine=engine)
    b.wait_assigned()  # the group has rebalanced onto both workers
    produce(settings, second)
    wait_until_caught_up(settings, 6000, procs=[a, b])
    applied_a = metric(scrape(a.metrics_port), "unisar_events_total", outcome="applied")
    applied_b = metric(scrape(b.metrics_port), "unisar_events_total", outcome="applied")
    # The second third was split: a kept some partitions, b took the others; none applied twice.
    assert applied_a > 3000 and applied_b > 0 and applied_a + applied_b == 6000
    assert a.stop() == 0  # b now takes every partition, restoring a's from the changelog
    produce(settings, third)
    wait_until_caught_up(settings, 9000, procs=[b])
    assert b.stop() == 0

    stored_b = stored_histories(tmp_path / "b")
    expected, _ = offline(events)
    # b ends with every user's full history, including partitions it never consumed itself.
    assert without_offsets(stored_b) == without_offsets(expected)
