"""The faust engine's seeks, on faust's own consumer code with the broker calls stubbed: the
sequence that lost events under kill -9 and rebalances (tests/integration/test_failures.py)
replayed without a broker, a kill or a timing to hit.

A partition's fetch position is modelled as aiokafka keeps it: it moves past every record
fetched, whether or not faust hands the record to a stream, and only a seek moves it back."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from stream.ingest.faust_transport import _EndOffsetsConsumer

EVENTS = [TP("events", p) for p in range(3)]
CHANGELOG = TP("changelog", 0)


class Broker:
    """What the consumer asks of the broker: committed and first offsets, and seeks."""

    def __init__(self, committed: dict, first: dict, position: dict) -> None:
        self.committed, self.first, self.position = committed, first, position

    def seek_to_committed(self) -> dict:
        # aiokafka's AIOKafkaConsumer.seek_to_committed: seeks only where the offset is above 0
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self.position[tp] = offset
        return dict(self.committed)


def consumer(cls, broker: Broker):
    """A faust consumer of class `cls` (its seek logic as shipped) over `broker`."""
    c = object.__new__(cls)
    c._read_offset = defaultdict(lambda: None)
    c._committed_offset = defaultdict(lambda: None)
    c.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={CHANGELOG.topic}))
    c.log = SimpleNamespace(dev=lambda *a, **k: None)
    c.assignment = lambda: set(EVENTS) | {CHANGELOG}

    async def seek_to_committed():
        return broker.seek_to_committed()

    async def earliest_offsets(*tps):
        return {tp: broker.first[tp] for tp in tps}

    async def _seek(tp, offset):
        broker.position[tp] = offset

    c.seek_to_committed, c.earliest_offsets, c._seek = seek_to_committed, earliest_offsets, _seek
    return c


def after_rebalance(cls) -> dict:
    """Fetch positions after faust's seek at the end of a rebalance. Events 0-199 of each
    partition were fetched; the streams' queues held them when the rebalance dropped them.
    Partition 0 had committed offset 120, partition 1 none yet, partition 2 offset 0."""
    broker = Broker(committed={EVENTS[0]: 120, EVENTS[1]: None, EVENTS[2]: 0},
                    first={tp: 0 for tp in EVENTS},
                    position={**{tp: 200 for tp in EVENTS}, CHANGELOG: 37})
    asyncio.run(consumer(cls, broker).perform_seek())
    return broker.position


def test_after_a_rebalance_every_partition_is_read_again_from_its_committed_or_first_offset():
    position = after_rebalance(_EndOffsetsConsumer)
    assert [position[tp] for tp in EVENTS] == [120, 0, 0]
    assert position[CHANGELOG] == 37  # table recovery positions the changelog itself


def test_faust_as_shipped_leaves_uncommitted_partitions_past_the_dropped_events():
    """The loss this engine mends: 200 events of partitions 1 and 2 would never be read
    again. If faust mends it upstream, this test says so and the override can go."""
    position = after_rebalance(aiokafka_driver.Consumer)
    assert [position[tp] for tp in EVENTS] == [120, 200, 200]


def test_refetch_reads_again_from_the_first_event_not_handed_to_a_stream():
    broker = Broker(committed={}, first={}, position={EVENTS[0]: 300})
    c = consumer(_EndOffsetsConsumer, broker)
    c._read_offset[EVENTS[0]] = 149  # 150-299 fetched but still waiting to be handed over
    asyncio.run(c.refetch(EVENTS[0]))
    assert broker.position[EVENTS[0]] == 150
    assert c._read_offset[EVENTS[0]] == 150  # so 150 itself is handed over when it comes


def test_refetch_before_any_event_was_handed_over_starts_at_the_committed_offset():
    broker = Broker(committed={}, first={}, position={EVENTS[0]: 300})
    c = consumer(_EndOffsetsConsumer, broker)
    c._committed_offset[EVENTS[0]] = 90
    asyncio.run(c.refetch(EVENTS[0]))
    assert broker.position[EVENTS[0]] == 90
