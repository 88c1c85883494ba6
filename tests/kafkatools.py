"""Test-side Kafka helpers on aiokafka: read a topic, wait for a group to catch up."""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from ops.settings import Settings
from stream.kafka import read_to_end


async def _read_all(settings: Settings, topic: str) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.brokers, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - the topic may be new
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list = []
        await read_to_end(consumer, tps, lambda tp, records: out.extend(records))
        return out
    finally:
        await consumer.stop()


def read_all(settings: Settings, topic: str) -> list:
    return asyncio.run(_read_all(settings, topic))


async def _committed(settings: Settings) -> int:
    # A group member that never subscribes can fetch the group's committed offsets
    # without joining, so without disturbing, the group.
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.brokers, group_id=settings.group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        parts = consumer.partitions_for_topic(settings.events_topic) or ()
        return sum([(await consumer.committed(TopicPartition(settings.events_topic, p))) or 0 for p in parts])
    finally:
        await consumer.stop()


def committed_total(settings: Settings) -> int:
    """Events the worker group has committed (offsets start at 0 on a fresh topic)."""
    return asyncio.run(_committed(settings))


def wait_until_caught_up(settings: Settings, produced: int, timeout_s: float = 120, procs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        lag = produced - committed_total(settings)
        if lag == 0:
            return
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"worker exited with {p.proc.returncode} while {lag} events were pending")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker group still {lag} events behind after {timeout_s} s")
        time.sleep(0.3)
