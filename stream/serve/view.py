"""The service's own view of every user's history, kept fresh from the changelog.

The stream workers send each changed history to the compacted changelog topic (key: the
user's stable id, 8 bytes big-endian; value: the stream.contract.history bytes). The
service follows every partition of it into a RocksDB store of its own (never the workers':
one process owns a RocksDB directory), writing each fetched chunk and its changelog position
in one batch, so a restart resumes where it stopped and reads only what it missed. A record
replaces the stored history only when it is newer (a higher last applied offset): a
compacted topic may replay older values. The same follower reads the events topic from
near its end, for the candidate pool's clicks.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ops.metrics import ServeMetrics
from ops.settings import KafkaSettings, TopicSettings
from state.store import HistoryStore
from stream.contract import history as hist
from stream.contract.events import Event, validate
from stream.kafka import aio_kwargs, read_to_end
from stream.serve.pool import PopularPool

log = logging.getLogger(__name__)


def position_key(partition: int) -> str:
    return f"serve-changelog/{partition}"


def newer_histories(records: list[tuple[bytes | None, bytes | None]], stored: Callable[[list[int]], list]) \
        -> dict[int, bytes]:
    """The histories among changelog (key, value) records that are newer than what the view
    holds (`stored(users)` gives its values). Records that are not a user's history (no key,
    a tombstone, short bytes) are skipped: they are not the service's to judge."""
    latest: dict[int, bytes] = {}
    for key, value in records:
        if key and len(key) == 8 and value and len(value) >= hist.MIN_BYTES:
            latest[int.from_bytes(key, "big")] = value
    users = list(latest)
    return {u: latest[u] for u, have in zip(users, stored(users))
            if have is None or hist.last_offset(latest[u]) > hist.last_offset(have)}


# Decoding a full history (60 behaviours) costs a request more than its RocksDB read; a user
# ranked again with an unchanged history (the same bytes) reuses the decoded one (immutable).
# A full history takes about 15 KB decoded: 4,096 of them stay within 64 MB.
_decode = functools.lru_cache(maxsize=4096)(hist.decode)


class HistoryView:
    """Reads of the view: a user unknown to it has an empty history."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.ready = False  # the changelog was read to its end once since start

    def get(self, user: int) -> hist.History:
        value = self.store.get_many([user])[0]
        return _decode(value) if value else hist.History()

    def get_many(self, users: list[int]) -> list[hist.History]:
        return [_decode(v) if v else hist.History() for v in self.store.get_many(users)]


class ChangelogFollower:
    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, view: HistoryView, pool: PopularPool,
                 metrics: ServeMetrics, pool_warmup: int = 20_000) -> None:
        self.kafka, self.topics, self.view, self.pool, self.metrics = kafka, topics, view, pool, metrics
        self.pool_warmup = pool_warmup

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(**aio_kwargs(self.kafka), enable_auto_commit=False, group_id=None,
                                    fetch_max_wait_ms=100, auto_offset_reset="earliest")
        await consumer.start()
        try:
            changelog = await self._partitions(consumer, self.topics.changelog_topic)
            events = await self._partitions(consumer, self.topics.events_topic)
            consumer.assign(changelog + events)
            for tp in changelog:
                seen = self.view.store.get_meta(position_key(tp.partition))
                consumer.seek(tp, 0 if seen is None else seen + 1)
            await self._warm_pool_positions(consumer, events)
            await read_to_end(consumer, changelog, self._on_changelog, timeout_s=600)
            self.view.ready = True
            log.info("history view restored: %d users", self.view.store.approximate_users())
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for tp, records in fetched.items():
                    if records:
                        (self._on_changelog if tp.topic == self.topics.changelog_topic else self._on_events)(tp, records)
                lag = 0
                for tp in changelog:
                    high = consumer.highwater(tp)
                    if high is not None:
                        lag += max(0, high - await consumer.position(tp))
                self.metrics.history_lag.set(lag)
                self.metrics.users.set(self.view.store.approximate_users())
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
        for _ in range(100):  # metadata of a topic just created takes a moment
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return [TopicPartition(topic, p) for p in sorted(parts)]
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public way
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic!r} does not exist (start the workers, or `unisar broker`, first)")

    async def _warm_pool_positions(self, consumer: AIOKafkaConsumer, events: list[TopicPartition]) -> None:
        """Start the events at `pool_warmup` records before their ends (spread over partitions)."""
        ends = await consumer.end_offsets(events)
        each = self.pool_warmup // max(1, len(events))
        for tp in events:
            consumer.seek(tp, max(0, ends[tp] - each))

    def _on_changelog(self, tp: TopicPartition, records: list) -> None:
        updates = newer_histories([(r.key, r.value) for r in records], self.view.store.get_many)
        self.view.store.apply(updates, {position_key(tp.partition): records[-1].offset})
        if self.view.ready:  # a restore's old records say nothing about freshness
            now = time.time()
            for r in records:
                self.metrics.history_delay.observe(max(0.0, now - r.timestamp / 1000))

    def _on_events(self, tp: TopicPartition, records: list) -> None:
        for r in records:
            try:
                obj = orjson.loads(r.value)
            except (orjson.JSONDecodeError, TypeError):
                continue  # the workers dead-letter it; the pool just ignores it
            event = validate(obj)
            if isinstance(event, Event):
                self.pool.add_event(event, obj)
