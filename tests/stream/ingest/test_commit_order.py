"""The default engine's commit order, with the broker calls recorded instead of made: no
changelog record leaves before the broker has every sample of the events it says were
applied. Otherwise a kill between the two acknowledgements leaves a history on the
changelog that a restarted or new owner restores, then skips those events as applied, and
their samples are never written."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
from aiokafka import TopicPartition
from eventgen import valid_events
from prometheus_client import CollectorRegistry

from ops.metrics import WorkerMetrics
from ops.settings import Settings
from state.store import MemoryHistoryStore
from stream.ingest.partition_step import home_partition
from stream.ingest.worker import StreamWorker

PARTITIONS = 2


class RecordingSender:
    """BatchSender's interface; `log` keeps ('append', topic) and ('flush',) in call order."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.offset = 0

    async def append(self, topic, partition, key, value, headers=None, timestamp_ms=None) -> None:
        self.log.append(("append", topic, partition))

    async def flush(self) -> dict:
        self.log.append(("flush",))
        last = {(e[1], e[2]): self.offset for e in self.log if e[0] == "append"}
        self.offset += 1
        return last


class RecordingConsumer:
    def __init__(self) -> None:
        self.committed: list[dict] = []

    async def commit(self, positions) -> None:
        self.committed.append(dict(positions))


def test_the_changelog_is_sent_only_after_every_sample_is_on_the_broker():
    settings = Settings(partitions=PARTITIONS, samples_topic="sm", changelog_topic="cl", events_topic="ev")
    worker = StreamWorker(settings, MemoryHistoryStore(), WorkerMetrics(CollectorRegistry()))
    worker._sender, worker._consumer = RecordingSender(), RecordingConsumer()
    worker._events_partitions = worker._samples_partitions = PARTITIONS
    events = valid_events(300, users=20, seed=4)
    records = [SimpleNamespace(key=str(e["user"]).encode(), value=orjson.dumps(e), headers=[], offset=i,
                               timestamp=e["ts"]) for i, e in enumerate(events)]
    tp = TopicPartition("ev", 0)
    home = [r for r in records if home_partition(r.key, PARTITIONS) == 0]

    async def run() -> None:
        async with worker._state_lock:
            await worker.process(tp, home)
        await worker.commit()

    asyncio.run(run())
    log = worker._sender.log
    kinds = [e[1] if e[0] == "append" else "flush" for e in log]
    assert "sm" in kinds and "cl" in kinds
    first_changelog = kinds.index("cl")
    last_sample = max(i for i, k in enumerate(kinds) if k == "sm")
    assert last_sample < first_changelog
    assert "flush" in kinds[last_sample:first_changelog], "no flush between the samples and the changelog"
    assert kinds[-1] == "flush" and worker._consumer.committed  # the changelog flushed, then offsets committed
