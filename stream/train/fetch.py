"""The trainer's input side: poll `sar.samples`, shed what is stale, decode, queue; then form
mini-batches from the queue. Each queue entry is (partition, offset, item), the item a
Sample, a skip reason (str) or a Shed run, so every offset moves on in order whatever the
record held."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from stream.contract import samples as sample_codec
from stream.train.admission import UNDECODABLE, Admission

log = logging.getLogger(__name__)


# A trainer far behind would read and drop thousands of stale records a second, on the cores
# it trains on. Past a stale record that ends a fetch, the fetcher seeks most of the way to
# where fresh records probably begin: records are taken to enter the partition at an even
# rate from that record to the partition's end. JUMP_SHARE keeps clear of that estimate; the
# records left before it are read and shed one by one, as without a jump. The estimate is
# wrong when the rate was not even (a quiet hour, then a burst): so a jump is only taken once
# it has landed on a stale record, which, ingest times rising with offsets, shows that every
# record passed was stale too. Landing on a fresh record, the fetcher goes back to where it
# left and reads on, without jumping again until it has read a fresh record. (The embedded
# broker cannot seek by time: it answers offsets_for_times with offset 0.)
JUMP_SHARE = 0.8
MIN_JUMP = 200  # fewer records are cheaper read than sought past


@dataclass(frozen=True, slots=True)
class Shed:
    """A run of `count` stale samples the fetcher skipped, up to its entry's offset (read and
    found stale, or passed by a jump without being read)."""

    count: int


def jump_target(offset: int, ingest_ms: int, end: int | None, now_s: float, max_staleness_s: float) -> int | None:
    """Where to seek after a stale record at `offset`, ingested at `ingest_ms`, when the
    partition ends at `end` (its high watermark): JUMP_SHARE of the way to the estimated
    first fresh record. None when that passes fewer than MIN_JUMP records."""
    age_s = now_s - ingest_ms / 1000
    if end is None or age_s <= max_staleness_s:
        return None
    first_fresh = offset + (end - offset) * (age_s - max_staleness_s) / age_s
    target = offset + 1 + int(JUMP_SHARE * (first_fresh - offset - 1))
    return target if target - offset - 1 >= MIN_JUMP else None


def _ingest_ms(record) -> int | None:
    return sample_codec.ingest_ms_of(record.value) if record.value is not None else None


async def fetch(consumer, admission: Admission, queue: asyncio.Queue, stop: asyncio.Event, lag=None,
                trained: dict[int, int] | None = None) -> None:
    """Poll until `stop`, queueing every record's entry. `lag` (a gauge by partition) follows
    the samples not yet trained of each partition held: from the end of the partition back to
    `trained[partition]` (the next offset the trainer has not consumed; until it has one, the
    consumer's position), so samples read but still queued count as lag."""
    jumps: dict = {}  # partition -> (first offset passed, landing offset): a jump not yet taken
    no_jump: set = set()  # partitions that landed on a fresh record, until they read one
    while not stop.is_set():
        fetched = await consumer.getmany(timeout_ms=200)
        now = time.time()
        if lag is not None:  # now: queueing a large fetch can wait on the trainer for long
            await _report_lag(consumer, lag, trained or {})
        for tp, records in fetched.items():
            shed, last = 0, -1  # a run of stale records: one queue entry for all of them
            passed, landing = jumps.pop(tp, (None, None))
            if landing is not None and records and records[0].offset >= landing:  # (else the position was reset)
                if not admission.is_stale(_ingest_ms(records[0]), now):
                    consumer.seek(tp, passed)  # fresh records may lie behind: read them all
                    no_jump.add(tp)
                    continue
                # older than a stale record, so stale: passed unread
                shed, last = records[0].offset - passed, records[0].offset - 1
            for record in records:
                # shed before decoding, and without queueing each: a trainer that fell behind
                # must skip samples faster than the stream makes them, and fresh samples must
                # not wait behind stale ones for a place in a batch
                ingest_ms = _ingest_ms(record)
                if admission.is_stale(ingest_ms, now):
                    shed, last, last_ms = shed + 1, record.offset, ingest_ms
                    continue
                no_jump.discard(tp)
                if shed:
                    await queue.put((tp.partition, last, Shed(shed)))
                    shed = 0
                try:
                    sample = sample_codec.decode(record.value)
                except ValueError as exc:
                    log.error("undecodable sample at %s/%d/%d: %s", tp.topic, tp.partition, record.offset, exc)
                    sample = UNDECODABLE  # still queued: its offset must move on in order
                await queue.put((tp.partition, record.offset, sample))
            if shed:
                await queue.put((tp.partition, last, Shed(shed)))
                # the fetch ended stale: jump most of the way to the fresh records
                target = None if tp in no_jump else \
                    jump_target(last, last_ms, consumer.highwater(tp), now, admission.max_staleness_s)
                if target is not None:
                    jumps[tp] = (last + 1, target)
                    consumer.seek(tp, target)


async def _report_lag(consumer, lag, trained: dict[int, int]) -> None:
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is not None:
            done = trained.get(tp.partition)
            lag.labels(str(tp.partition)).set(max(0, high - (await consumer.position(tp) if done is None else done)))


async def next_batch(queue: asyncio.Queue, stop: asyncio.Event, admission: Admission, batch_size: int,
                     max_wait_s: float) -> list:
    """Entries until `batch_size` samples, or `max_wait_s` after the first sample; none after
    0.2 s of an empty queue (the caller may do idle work). The wait starts at a sample, not at
    a shed entry: after a step the queue starts with what went stale during it, and a wait
    counted from there ran out while the fetcher was still catching up, so a shedding trainer
    stepped on half-full batches."""
    batch: list = []
    deadline, samples = None, 0  # entries of shed runs take no place in the batch
    while samples < batch_size and not stop.is_set():
        if not queue.empty():  # take what is there without a wait_for per item
            entry = queue.get_nowait()
        else:
            timeout = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                entry = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                break
        # A sample that went stale while it waited in the queue (during the last step) is
        # shed here, taking no place: else a batch would fill with the oldest samples and
        # lose most of them at admission, and the trainer would step on small batches.
        entry = _shed_if_stale(entry, admission, time.time())
        batch.append(entry)
        if not isinstance(entry[2], Shed):
            samples += 1
            if deadline is None:
                deadline = time.monotonic() + max_wait_s
        if samples == batch_size:
            # A trainer that caught up reads the oldest fresh samples first, just under the
            # bound: some crossed it while the batch formed, and admission dropped them after
            # it was full (half of each batch at 5,000 events/s). Shed now, their places fill.
            now = time.time()
            batch[:] = [_shed_if_stale(e, admission, now) for e in batch]
            samples = sum(not isinstance(item, Shed) for _, _, item in batch)
    return batch


def _shed_if_stale(entry: tuple, admission: Admission, now_s: float) -> tuple:
    """`entry`, or a shed entry at its offset where it holds a sample stale at `now_s`."""
    partition, offset, item = entry
    if isinstance(item, sample_codec.Sample) and admission.is_stale(item.ingest_ms, now_s):
        return partition, offset, Shed(1)
    return entry
