"""The stream worker's default engine: events in, per-user histories in RocksDB, training
samples out, on aiokafka (the Kafka client faust itself is built on) with batch polling and
batch produce. `stream.ingest.faust_app` is the same worker as a faust-streaming app; both
call the same pure step (stream.ingest.partition_step), so they differ only in how records
arrive, how state is kept durable and how partitions move:

- this loop only fetches, calls the step, emits, stores and counts; a failure that is not
  a record's (broker, disk) stops the worker before anything past it is committed;
- a commit makes samples, dead letters and changelog records durable on the broker, then
  the histories (with their last applied offsets) in RocksDB, then the consumer offsets;
- every change also goes to a compacted changelog topic, co-partitioned with the events,
  which a worker replays on partition assignment, so a partition that moves to another
  worker brings its histories along. faust tables give the same through their changelog;
  here it is explicit, because faust's per-event agent path measured 5.8k events/s doing
  nothing on a 2-core machine, below the 20k events/s a worker must sustain.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from ops.metrics import WorkerMetrics
from ops.settings import Settings
from state.store import HistoryStore
from stream.contract import history as hist
from stream.contract.events import Rejection, dead_letter_headers
from stream.ingest import changelog
from stream.ingest.changelog import changelog_key
from stream.ingest.partition_step import step_partition
from stream.kafka import aio_kwargs, read_to_end

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """Everything read since the last commit; a commit makes it durable in one step."""

    histories: dict[int, bytes] = field(default_factory=dict)  # dirty users
    partition_of: dict[int, int] = field(default_factory=dict)  # user -> events partition
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read
    event_times: list[float] = field(default_factory=list)  # Kafka timestamps, seconds

    def __bool__(self) -> bool:
        return bool(self.positions)


class BatchSender:
    """Appends records to one aiokafka batch per (topic, partition) and sends full ones;
    `flush()` sends the rest and waits for every acknowledgement. Far cheaper per record
    than producer.send()."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._open: dict[tuple[str, int], object] = {}
        self._inflight: list[tuple[tuple[str, int], int, asyncio.Future]] = []

    async def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                     headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None) -> None:
        where = (topic, partition)
        record = dict(key=key, value=value, timestamp=timestamp_ms, headers=headers or [])
        batch = self._open.get(where)
        if batch is None:
            batch = self._open[where] = self._producer.create_batch()
        if batch.append(**record) is None:
            await self._send(where)
            batch = self._open[where] = self._producer.create_batch()
            if batch.append(**record) is None:
                raise ValueError(f"record of {len(value or b'')} bytes does not fit one batch for {topic}")

    async def _send(self, where: tuple[str, int]) -> None:
        batch = self._open.pop(where)
        count = batch.record_count()
        batch.close()
        future = await self._producer.send_batch(batch, where[0], partition=where[1])
        self._inflight.append((where, count, future))

    async def flush(self) -> dict[tuple[str, int], int]:
        """Send everything; return the last offset written per (topic, partition)."""
        for where in list(self._open):
            if self._open[where].record_count():
                await self._send(where)
        self._open.clear()
        inflight, self._inflight = self._inflight, []
        last: dict[tuple[str, int], int] = {}
        for where, count, future in inflight:
            meta = await future
            last[where] = max(last.get(where, -1), meta.offset + count - 1)
        return last


class StreamWorker(ConsumerRebalanceListener):
    def __init__(self, settings: Settings, store: HistoryStore, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.limits = hist.Limits(settings.max_rec, settings.max_search, settings.max_clicks)
        self.pending = Pending()
        self._state_lock = asyncio.Lock()  # guards `pending` across awaits
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._sender: BatchSender | None = None
        self._samples_partitions = 1
        self._events_partitions = 1

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._producer = AIOKafkaProducer(
            **aio_kwargs(s), acks="all", enable_idempotence=False, linger_ms=5,
            max_batch_size=512 * 1024, max_request_size=8 << 20)
        self._consumer = AIOKafkaConsumer(
            **aio_kwargs(s), group_id=s.group, enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=s.max_poll_records, fetch_max_bytes=32 << 20,
            max_partition_fetch_bytes=4 << 20, session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
            max_poll_interval_ms=300_000)
        await self._producer.start()
        try:
            self._sender = BatchSender(self._producer)
            self._samples_partitions = len(await self._producer.partitions_for(s.samples_topic))
            self._events_partitions = len(await self._producer.partitions_for(s.events_topic))
            self._consumer.subscribe([s.events_topic], listener=self)
            await self._consumer.start()
            try:
                await self._loop(stop)
                await self.commit()
            finally:
                await self._consumer.stop()
        finally:
            await self._producer.stop()
        log.info("worker stopped cleanly")

    async def _loop(self, stop: asyncio.Event) -> None:
        last_commit = time.monotonic()
        while not stop.is_set():
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=self.settings.max_poll_records)
            # The lock keeps a rebalance's commit from cutting through a fetch half-processed;
            # records of a partition revoked meanwhile are dropped (its new owner reads them).
            async with self._state_lock:
                owned = self._consumer.assignment()
                for tp, messages in fetched.items():
                    if messages and tp in owned:
                        await self.process(tp, messages)
            if self.pending and time.monotonic() - last_commit >= self.settings.commit_interval_s:
                await self.commit()
                last_commit = time.monotonic()
                await self._observe_lag()

    # ---- the hot path ----------------------------------------------------------------------

    async def process(self, tp: TopicPartition, messages: list) -> None:
        """Step every message of one partition's fetch (stream.ingest.partition_step); emit
        samples, dead letters and forwarded events. Call with the state lock held."""
        s, pending, sender = self.settings, self.pending, self._sender
        pending.event_times.extend(m.timestamp / 1000 for m in messages)
        out = step_partition(tp.partition, messages, pending.histories, self.store.get_many,
                             self._events_partitions, self.limits)
        for user in out.loaded:
            pending.partition_of[user] = tp.partition
        # Histories loaded but unchanged are written back by the commit: harmless, and it
        # keeps one dict instead of two.
        for home, msg, headers in out.forwards:
            await sender.append(s.events_topic, home, msg.key, msg.value, headers, msg.timestamp)
        sample_partition = tp.partition % self._samples_partitions
        for key, sample in out.samples:
            await sender.append(s.samples_topic, sample_partition, key, sample)
        for msg, why in out.dead_letters:
            await self._dead_letter(tp, msg, why)
        pending.positions[tp] = messages[-1].offset + 1
        self.metrics.count_step(out.counts)

    async def _dead_letter(self, tp: TopicPartition, msg, why: Rejection) -> None:
        headers = dead_letter_headers(why, f"{tp.topic}/{tp.partition}/{msg.offset}")
        await self._sender.append(self.settings.dlq_topic, 0, msg.key, msg.value, headers)
        self.metrics.count_dead_letter(why.stage)

    # ---- durability ------------------------------------------------------------------------

    async def commit(self) -> None:
        """Make everything read so far durable, in this order:

        1. wait until the broker has every sample, dead letter and forwarded event;
        2. send the changelog records (latest history of each dirty user) and wait until the
           broker has them;
        3. write the histories and the changelog positions to RocksDB in one WriteBatch;
        4. commit the consumer offsets to Kafka.

        A crash before 3 replays the events: their samples may repeat (at-least-once, by
        event_id), their state is rebuilt from the changelog or recomputed, never doubled.
        A crash between 3 and 4 replays events whose offsets the histories already hold:
        they are skipped. Nothing read is lost, because offsets move only after 1 to 3, and
        no history on the changelog (which a restarted or new owner restores, then skips
        the events it holds) is ahead of the samples those events made: hence 1 before 2.
        """
        async with self._state_lock:
            pending, self.pending = self.pending, Pending()
            if not pending:
                return
            started = time.monotonic()
            topic = self.settings.changelog_topic
            await self._sender.flush()
            for user, value in pending.histories.items():
                await self._sender.append(topic, pending.partition_of[user], changelog_key(user), value)
            last = await self._sender.flush()
            meta = {changelog.position_name(p): off for (t, p), off in last.items() if t == topic}
            await asyncio.to_thread(self.store.apply, pending.histories, meta)
            try:
                await self._consumer.commit(pending.positions)
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance took the partitions first. Safe: the state is stored with each
                # user's last offset, so whoever reads these events again skips them.
                log.warning("offset commit refused (%s); the events will be redelivered and skipped", exc)
            done = time.time()
            for ts in pending.event_times:
                self.metrics.processing.observe(max(0.0, done - ts))
            self.metrics.commit.observe(time.monotonic() - started)
            self.metrics.users.set(self.store.approximate_users())

    async def _observe_lag(self) -> None:
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                position = await self._consumer.position(tp)
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - position))

    # ---- rebalancing -----------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked) -> None:
        if self._sender is not None:
            await self.commit()
        for tp in revoked:  # its new owner reports its lag now
            try:
                self.metrics.lag.remove(str(tp.partition))
            except KeyError:
                pass
        self.metrics.partitions.dec(sum(tp.topic == self.settings.events_topic for tp in revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        parts = sorted(tp.partition for tp in assigned if tp.topic == self.settings.events_topic)
        if parts:
            restored = await restore_from_changelog(self.settings, self.store, parts)
            self.metrics.restored.inc(restored)
            log.info("assigned partitions %s; restored %d histories from the changelog", parts, restored)
        self.metrics.partitions.inc(len(parts))  # after the restore: the partitions are ready to consume


async def restore_from_changelog(settings: Settings, store: HistoryStore, partitions: list[int]) -> int:
    """Bring the local store up to the changelog's end for `partitions`: read each from the
    position this store last saw, keep a record when it is newer (higher last applied offset)
    than the local history. Returns how many histories changed."""
    tps = [TopicPartition(settings.changelog_topic, p) for p in partitions]
    consumer = AIOKafkaConsumer(**aio_kwargs(settings), enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=100)
    await consumer.start()
    changed = 0

    def apply(tp: TopicPartition, records: list) -> None:
        nonlocal changed
        changed += changelog.merge(store, tp.partition, ((r.key, r.value, r.offset) for r in records))

    try:
        consumer.assign(tps)
        for tp in tps:
            seen = store.get_meta(changelog.position_name(tp.partition))
            consumer.seek(tp, 0 if seen is None else seen + 1)
        await read_to_end(consumer, tps, apply)
    finally:
        await consumer.stop()
    return changed
