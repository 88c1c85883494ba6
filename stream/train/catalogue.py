"""The trainer's reader of the catalogue topic (`sar.items`, compacted, one partition): item
records and user profiles.

Every trainer reads the whole topic (no consumer group: the catalogue is not split between
trainers) from the offset its checkpoint holds, or from the beginning. Records are validated
against catalogue v1 with their key (stream.contract.items); a bad one is dead-lettered with
its reason, as the worker does bad events, and never stops the trainer. Good records wait in
`pending` until the trainer takes them between two steps (`drain`), so the catalogue never
changes under a running step, and the offset saved in a checkpoint is that of the records
its model has taken.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ops.settings import Settings
from stream.contract.events import Rejection, dead_letter_headers
from stream.contract.items import CatalogueRecord, parse_record
from stream.kafka import aio_kwargs

log = logging.getLogger(__name__)


class CatalogueFollower:
    def __init__(self, settings: Settings, next_offset: int = 0) -> None:
        self.settings = settings
        self.next_offset = next_offset  # of the records drained (taken by the model) so far
        self.pending: list[tuple[int, CatalogueRecord | None]] = []  # (offset, record; None: dead-lettered)
        self.dead_letters = 0

    def drain(self) -> list[CatalogueRecord]:
        """The good records read since the last drain; moves `next_offset` past every record read."""
        taken, self.pending = self.pending, []
        if taken:
            self.next_offset = taken[-1][0] + 1
        return [record for _, record in taken if record is not None]

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        tp = TopicPartition(s.items_topic, 0)
        consumer = AIOKafkaConsumer(**aio_kwargs(s), enable_auto_commit=False, auto_offset_reset="earliest")
        producer = AIOKafkaProducer(**aio_kwargs(s))
        await consumer.start()
        await producer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, self.next_offset)
            while not stop.is_set():
                fetched = await consumer.getmany(tp, timeout_ms=500)
                for record in fetched.get(tp, []):
                    parsed = parse_record(record.value, record.key)
                    if not isinstance(parsed, Rejection):
                        self.pending.append((record.offset, parsed))
                        continue
                    log.warning("catalogue record %s/0/%d dead-lettered: %s", tp.topic, record.offset, parsed.reason)
                    headers = dead_letter_headers(parsed, f"{tp.topic}/0/{record.offset}")
                    await producer.send_and_wait(s.dlq_topic, record.value, key=record.key, headers=headers)
                    self.dead_letters += 1
                    self.pending.append((record.offset, None))
        finally:
            await consumer.stop()
            await producer.stop()
