"""The stream worker as a faust-streaming app: the same topics, the same pure step
(stream.ingest.partition_step), the same histories changelog, the same RocksDB state folder
and the same metrics as the default engine (stream.ingest.worker), with faust doing what it
is for: the consumer group and its assignor, a Table whose changelog follows its partition
(restored on assignment, mirrored by standby replicas), offset commits.

- One agent takes the events in batches (`take_events`: the step's store reads, the flush
  and the RocksDB write are paid per batch, not per event), groups them by partition and
  calls the step on each run. faust still hands over events one at a time, which bounds the
  rate (benchmarks/ingest.py prints both engines).
- The Table's store is `HistoryTableStore` (stream.ingest.faust_table): faust's store
  interface over the project's RocksDB store (rocksdict, explicit bytes, never pickle), so
  the state folder holds the same records whichever engine wrote it.
- The broker is reached through faust's Kafka transport with end offsets read from fetches
  (stream.ingest.faust_transport), which the embedded broker needs for table recovery.
- Durability has the default engine's order (stream.ingest.worker, `commit`): each batch's
  samples, dead letters and forwards are on the broker before its changelog records are
  sent, those are on the broker before its histories are written to RocksDB in one
  WriteBatch, and only then does faust ack the events, whose offsets it commits later. A
  crash replays events whose histories may be stored already: their offsets are in the
  histories, so they are skipped, never applied twice.
- Changelog records are sent as the producer's own records with an explicit partition,
  awaited like the samples, rather than through `table[key] = value` or the Table's
  `send_changelog`: inside a `take_events` batch faust has no current event to take the
  partition from, faust's buffer behind `send_changelog` can return from a flush with
  records still unsent (it gives up after 0.1 s without progress), and one WriteBatch per
  batch is far cheaper than a RocksDB put per event.

Run it with `unisar worker --engine faust`, or `faust -A stream.ingest.faust_main worker`
(settings from UNISAR_* variables).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust

from ops.metrics import WorkerMetrics
from ops.settings import Settings
from state.store import HistoryStore
from stream.contract import history as hist
from stream.contract.events import dead_letter_headers
from stream.ingest.changelog import changelog_key
from stream.ingest.engines import EngineFailure
from stream.ingest.faust_table import HistoryTable, HistoryTableStore
from stream.ingest.faust_transport import broker_urls
from stream.ingest.partition_step import step_partition

log = logging.getLogger(__name__)
TABLE = "histories"
STALL_S = 15.0  # an owned partition with events to read and no progress this long is stalled


@dataclass(frozen=True, slots=True)
class FaustRecord:
    """A faust message as the step reads it (faust's timestamp is in seconds)."""

    key: bytes | None
    value: bytes | None
    headers: list
    offset: int
    timestamp: int

    @classmethod
    def of(cls, message) -> FaustRecord:
        headers = message.headers.items() if isinstance(message.headers, dict) else message.headers
        return cls(message.key, message.value, list(headers or ()), message.offset,
                   int(message.timestamp * 1000))


class StallWatch:
    """Tells a stalled partition from a slow or idle one: a partition with events to read
    whose position has not moved for STALL_S is sought once ("seek"); if it still has not
    moved after 3 x STALL_S while new events kept arriving (so the broker answers), the
    worker must stop ("fail"). A partition with nothing to read, or a broker that does not
    answer (no new events seen), never fails."""

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._since: dict[int, tuple[int, int, float]] = {}  # partition -> (position, highwater, since)
        self._sought: set[int] = set()

    def observe(self, partition: int, position: int, high: int, now: float) -> str:
        last, high_then, since = self._since.get(partition, (None, high, now))
        if high <= position or position != last:
            self._since[partition] = (position, high, now)
            self._sought.discard(partition)
            return "ok"
        stalled = now - since
        if stalled >= 3 * self.stall_s and high > high_then and partition in self._sought:
            return "fail"
        if stalled >= self.stall_s and partition not in self._sought:
            self._sought.add(partition)
            return "seek"
        return "ok"

    def keep(self, partitions: set[int]) -> None:
        """Forget partitions no longer owned."""
        for p in set(self._since) - partitions:
            del self._since[p]
            self._sought.discard(p)


class FaustWorker:
    """The app, its topics and table, and the agent's batch handler."""

    def __init__(self, settings: Settings, store: HistoryStore, metrics: WorkerMetrics,
                 partitions: dict[str, int]) -> None:
        """`partitions`: each topic's partition count (stream.kafka.ensure_topics)."""
        s = self.settings = settings
        self.events_partitions = partitions[s.events_topic]
        self.samples_partitions = partitions[s.samples_topic]
        self.store, self.metrics = store, metrics
        self.limits = hist.Limits(s.max_rec, s.max_search, s.max_clicks)
        self.app = faust.App(
            s.group, broker=broker_urls(s.brokers),
            datadir=f"{s.state_dir}/faust", web_enabled=False, processing_guarantee="at_least_once",
            topic_partitions=self.events_partitions, table_standby_replicas=1, consumer_auto_offset_reset="earliest",
            broker_commit_interval=s.commit_interval_s, broker_session_timeout=10,
            broker_heartbeat_interval=2, broker_max_poll_records=s.max_poll_records,
            stream_buffer_maxsize=max(4096, s.max_poll_records), producer_linger=0.005,
            producer_max_batch_size=512 * 1024, producer_max_request_size=8 << 20,
            producer_acks=-1)
        raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.events = self.app.topic(s.events_topic, **raw)
        self.table = self.app.tables.add(HistoryTable(
            self.app, name=TABLE, default=None, partitions=self.events_partitions, beacon=self.app.tables.beacon,
            changelog_topic=self.app.topic(s.changelog_topic, partitions=self.events_partitions, compacting=True, **raw),
            store_factory=self._new_store, key_type=bytes, value_type=bytes,
            schema=faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")))
        self.app.agent(self.events, name="events")(self._agent)
        self.app.timer(max(1.0, s.commit_interval_s), name="lag")(self._observe)
        self.app.on_rebalance_complete.connect(self._on_rebalanced)
        self.watch = StallWatch()
        self.failure: str | None = None  # why the worker must stop, found by the watchdog

    async def run(self, stop) -> None:
        """Run the app until `stop` is set; stopping flushes and commits what it has read."""
        await self.app.start()
        try:
            while not stop.is_set() and not self.app.crashed and self.failure is None:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.app.stop()
        if self.app.crashed:
            raise EngineFailure(f"the faust app crashed: {self.app.crash_reason!r}")
        if self.failure is not None:
            raise EngineFailure(self.failure)
        log.info("faust worker stopped cleanly")

    def _new_store(self, table: HistoryTable) -> HistoryTableStore:
        return HistoryTableStore(
            "unisar://", self.app, table, table_name=table.name, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw", loop=table.loop, history_store=self.store,
            metrics=self.metrics)

    async def _agent(self, stream) -> None:
        async for batch in stream.take_events(self.settings.max_poll_records, within=0.05):
            await self.handle(batch)

    async def handle(self, batch: list) -> None:
        """Step one batch: emit, flush to the broker, store the histories. faust acks the
        events when this returns."""
        s, producer, started = self.settings, self.app.producer, time.monotonic()
        runs: dict[int, list] = {}
        for event in batch:
            runs.setdefault(event.message.partition, []).append(FaustRecord.of(event.message))
        histories: dict[int, bytes] = {}
        partition_of: dict[int, int] = {}
        for partition, records in runs.items():
            out = step_partition(partition, records, histories, self.store.get_many, self.events_partitions,
                                 self.limits)
            for user in out.loaded:
                partition_of[user] = partition
            for home, record, headers in out.forwards:
                await producer.send(s.events_topic, record.key, record.value, home, record.timestamp / 1000, headers)
            for key, sample in out.samples:
                await producer.send(s.samples_topic, key, sample, partition % self.samples_partitions, None, None)
            for record, why in out.dead_letters:
                headers = dead_letter_headers(why, f"{s.events_topic}/{partition}/{record.offset}")
                await producer.send(s.dlq_topic, record.key, record.value, 0, None, headers)
                self.metrics.count_dead_letter(why.stage)
            self.metrics.count_step(out.counts)
        await producer.flush()  # every sample, dead letter and forward is on the broker...
        sent = [(partition_of[user], await producer.send(s.changelog_topic, changelog_key(user), value,
                                                         partition_of[user], None, None))
                for user, value in histories.items()]
        await producer.flush()  # ...before any changelog record that says they were applied
        positions: dict[int, int] = {}
        for partition, future in sent:
            positions[partition] = max(positions.get(partition, -1), (await future).offset)
        self.table.data.write(histories, positions)
        done = time.time()
        for records in runs.values():
            for record in records:
                self.metrics.processing.observe(max(0.0, done - record.timestamp / 1000))
        self.metrics.commit.observe(time.monotonic() - started)
        self.metrics.users.set(self.store.approximate_users())

    def owned(self) -> list:
        return [tp for tp in self.app.consumer.assignment() if tp.topic == self.settings.events_topic]

    async def _on_rebalanced(self, sender: Any = None, **kwargs: Any) -> None:
        owned = self.owned()
        self.metrics.partitions.set(len(owned))
        self.metrics.lag.clear()
        log.info("faust worker owns events partitions %s", sorted(tp.partition for tp in owned))

    async def _observe(self) -> None:
        """Export the lag; watch for a partition that has events to read but stopped moving."""
        consumer, now = self.app.consumer, time.monotonic()
        owned = self.owned()
        for tp in owned:
            try:
                position = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - e.g. revoked by a rebalance since `owned`: next tick
                continue
            if position is None:
                continue
            high = consumer.highwater(tp) or 0
            lag = max(0, high - position)
            self.metrics.lag.labels(str(tp.partition)).set(lag)
            action = self.watch.observe(tp.partition, position, high, now)
            if action == "seek":
                # faust-streaming can leave a partition without fetches after a rebalance
                # (faust-streaming/faust#629); a seek restarts them (stream.ingest.faust_transport).
                log.warning("events partition %d stopped at offset %d with %d to read: fetching it again",
                            tp.partition, position, lag)
                await consumer.refetch(tp)
            elif action == "fail":
                self.failure = (f"events partition {tp.partition} stopped at offset {position} while new events "
                                f"kept arriving, and a seek did not help; restart the worker")
        self.watch.keep({tp.partition for tp in owned})
