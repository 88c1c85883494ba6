"""Kafka client settings and topic set-up, shared by the producer, the worker and tools."""
from __future__ import annotations

import asyncio
import logging
import ssl

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ops.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)


def aio_kwargs(settings: KafkaSettings) -> dict:
    """Connection kwargs for aiokafka clients (TLS through an SSL context)."""
    kwargs = settings.kafka_common()
    if "SSL" in settings.security_protocol:
        kwargs["ssl_context"] = ssl.create_default_context(cafile=settings.ssl_cafile)
    return kwargs


def sync_kwargs(settings: KafkaSettings) -> dict:
    """Connection kwargs for kafka-python clients."""
    kwargs = settings.kafka_common()
    if settings.ssl_cafile:
        kwargs["ssl_cafile"] = settings.ssl_cafile
    return kwargs


def topic_specs(settings: Settings) -> list[NewTopic]:
    p = settings.partitions
    return [
        NewTopic(settings.events_topic, p, 1),
        NewTopic(settings.samples_topic, p, 1),
        NewTopic(settings.dlq_topic, 1, 1),
        # Compacted: the latest history per user is all a restore needs. Never time-expire it.
        NewTopic(settings.changelog_topic, p, 1, topic_configs={"cleanup.policy": "compact"}),
        # Compacted too: the latest record of each item is the catalogue. One partition: every
        # trainer reads all of it.
        NewTopic(settings.items_topic, 1, 1, topic_configs={"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the project's topics if missing; fail loudly if events and changelog disagree
    on partition count (a user's history would land on the wrong partition). Returns the
    partition counts of the events, changelog and samples topics."""
    admin = AIOKafkaAdminClient(**aio_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", [t.name for t in missing])
        described = await admin.describe_topics(
            [settings.events_topic, settings.changelog_topic, settings.samples_topic])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        if counts[settings.events_topic] != counts[settings.changelog_topic]:
            raise RuntimeError(f"expected {settings.events_topic} and {settings.changelog_topic} to have the same "
                               f"number of partitions, got {counts}")
        return counts
    finally:
        await admin.close()


def ensure_topics_sync(settings: Settings) -> dict[str, int]:
    return asyncio.run(ensure_topics(settings))


async def read_to_end(consumer, tps: list, on_records, timeout_s: float = 60.0) -> None:
    """Read the assigned partitions `tps` from their current positions up to their ends,
    calling `on_records(tp, records)` for each fetched chunk.

    The end is the high watermark that fetch responses report, not ListOffsets: the embedded
    Tansu broker answers ListOffsets(latest) with the last batch's base offset + 1, which
    stops short of the real end whenever a batch holds more than one record.
    """
    import time

    deadline = time.monotonic() + timeout_s
    pending = set(tps)
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=300, max_records=10_000)
        for tp, records in fetched.items():
            if records:
                on_records(tp, records)
        for tp in list(pending):
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) >= high:
                pending.discard(tp)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted(str(tp) for tp in pending)} to the end in {timeout_s} s")
