"""faust's Kafka transport with the end of a partition read from fetch responses.

The embedded Tansu broker answers ListOffsets(latest) with the last record batch's base
offset + 1, short of the real end whenever that batch holds several records; faust's table
recovery reads changelog ends that way, so it refused a store that was ahead of it
(ConsistencyError) and would have stopped short of the newest histories. Broker URLs
`unisar-kafka://` select this transport; on Kafka both ways give the log end.
"""
from __future__ import annotations

import time

from faust.transport import drivers as faust_transports
from faust.transport.drivers import aiokafka as aiokafka_driver


class _EndOffsetsThread(aiokafka_driver.AIOKafkaConsumerThread):
    """End offsets as a fetch from the listed end - 1 reports them (one fetch per partition
    at a rebalance)."""

    async def _highwaters(self, partitions: list) -> dict:
        listed = await super()._highwaters(partitions)
        return await fetched_ends(self._ensure_consumer()._client, listed)


class _EndOffsetsConsumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> _EndOffsetsThread:
        return _EndOffsetsThread(self, loop=self.loop, beacon=self.beacon)


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
