"""faust's Kafka transport, mended where faust-streaming 0.15 misreads the broker or can
lose events. Broker URLs `unisar-kafka://` select it.

- **End offsets from fetches.** The embedded Tansu broker answers ListOffsets(latest) with
  the last record batch's base offset + 1, short of the real end whenever that batch holds
  several records; faust's table recovery reads changelog ends that way, so it refused a
  store that was ahead of it (ConsistencyError) and would have stopped short of the newest
  histories. On Kafka both ways give the log end.
- **A partition with no committed offset is sought too.** After a rebalance faust drops the
  events its streams had queued and seeks every partition back to its committed offset,
  but aiokafka seeks only where that offset is above 0: a partition not yet committed (or
  committed at 0) kept its fetch position past the dropped events, so they were never read
  again, and faust committed past them (with no committed offset it does not look for a
  hole before the first offset acknowledged). Here such a partition is sought to its first
  offset.
- **A stalled partition is read again without dropping events** (`refetch`).
"""
from __future__ import annotations

import logging
import time

from faust.transport import drivers as faust_transports
from faust.transport.drivers import aiokafka as aiokafka_driver

log = logging.getLogger(__name__)


class _EndOffsetsThread(aiokafka_driver.AIOKafkaConsumerThread):
    """End offsets as a fetch from the listed end - 1 reports them (one fetch per partition
    at a rebalance)."""

    async def _highwaters(self, partitions: list) -> dict:
        listed = await super()._highwaters(partitions)
        return await fetched_ends(self._ensure_consumer()._client, listed)


class _EndOffsetsConsumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> _EndOffsetsThread:
        return _EndOffsetsThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        if unsought := await seek_unsought(self):
            log.info("partitions with no committed offset read from their first offset: %s",
                     sorted(f"{tp.topic}/{tp.partition}" for tp in unsought))

    async def refetch(self, tp) -> None:
        """Read `tp` again from the first offset not yet handed to a stream: restarts a
        partition whose fetches stopped (faust-streaming/faust#629) without dropping the
        events already fetched but not yet handed over (a seek to the fetch position drops
        them, and faust then commits past them)."""
        delivered = self._read_offset.get(tp)
        offset = delivered + 1 if delivered is not None else self._committed_offset.get(tp)
        if offset is not None:
            await self.seek(tp, offset)


async def seek_unsought(consumer) -> list:
    """Seek each assigned stream partition that faust's seek to the committed offsets left
    where it was (none committed, or 0) to its first offset. Returns those partitions."""
    tables = consumer.app.tables.changelog_topics  # table recovery positions those itself
    unsought = [tp for tp in consumer.assignment()
                if tp.topic not in tables and not consumer._committed_offset.get(tp)]
    if unsought:
        first = await consumer.earliest_offsets(*unsought)
        for tp in unsought:
            await consumer.seek(tp, first[tp])
    return unsought


class EndOffsetsTransport(aiokafka_driver.Transport):
    """faust's Kafka transport with `_EndOffsetsThread` (broker URLs `unisar-kafka://`)."""

    Consumer = _EndOffsetsConsumer


SCHEME = "unisar-kafka"
faust_transports.TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:EndOffsetsTransport")


def broker_urls(brokers: str) -> list[str]:
    """faust broker URLs for `host:port[,host:port...]`, on this transport."""
    return [f"{SCHEME}://{b.strip()}" for b in brokers.split(",") if b.strip()]


async def fetched_ends(client, listed: dict) -> dict:
    """The end offset of each partition as a fetch from `listed[tp] - 1` reports it."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=client._bootstrap_servers, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        consumer.assign(list(listed))
        for tp, end in listed.items():
            consumer.seek(tp, max(0, (end or 0) - 1))
        ends = dict(listed)
        pending = set(listed)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None:
                    ends[tp] = max(ends[tp] or 0, high)
                    pending.discard(tp)
        return ends
    finally:
        await consumer.stop()
