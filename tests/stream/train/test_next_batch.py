"""The trainer's batch forming: samples that went stale while queued are shed there, in
order, and take no place in the batch (else a batch fills with the oldest samples and loses
most of them at admission)."""
from __future__ import annotations

import asyncio
import time

from stream.contract.history import History
from stream.contract.samples import Sample
from stream.train.admission import Admission
from stream.train.fetch import Shed, next_batch as form_batch


def sample(n: int, age_s: float) -> Sample:
    return Sample(f"e{n}", 1, 1, "rec", (5,), 1, (), History(-1, (), ()), int((time.time() - age_s) * 1000))


def next_batch(entries: list, batch_size: int, max_staleness_s: float | None) -> list:
    async def run() -> list:
        queue: asyncio.Queue = asyncio.Queue()
        for entry in entries:
            queue.put_nowait(entry)
        return await form_batch(queue, asyncio.Event(), Admission(100, max_staleness_s), batch_size, 0.05)

    return asyncio.run(run())


def test_stale_samples_are_shed_in_order_and_fresh_ones_fill_the_batch():
    entries = [(0, i, sample(i, 10.0)) for i in range(5)] + [(0, 5 + i, sample(5 + i, 0.1)) for i in range(4)]
    batch = next_batch(entries, batch_size=3, max_staleness_s=2.0)
    assert [offset for _, offset, _ in batch] == list(range(8))  # offsets stay in order: none skipped
    assert all(isinstance(item, Shed) and item.count == 1 for _, _, item in batch[:5])
    assert [item.event_id for _, _, item in batch[5:]] == ["e5", "e6", "e7"]  # three fresh samples: full


def test_without_a_staleness_bound_nothing_is_shed():
    entries = [(0, i, sample(i, 10.0)) for i in range(4)]
    batch = next_batch(entries, batch_size=3, max_staleness_s=None)
    assert [item.event_id for _, _, item in batch] == ["e0", "e1", "e2"]


def queued_then_fresh(queued_ages: list[float], n_fresh: int, after_s: float, batch_size: int,
                      max_wait_s: float) -> list:
    """A batch formed from samples already queued (of the given ages) and `n_fresh` fresh
    samples that a catching-up fetcher puts in `after_s` later, 10 ms apart."""
    async def run() -> list:
        queue: asyncio.Queue = asyncio.Queue()
        for i, age in enumerate(queued_ages):
            queue.put_nowait((0, i, sample(i, age)))

        async def catch_up():
            await asyncio.sleep(after_s)
            for i in range(len(queued_ages), len(queued_ages) + n_fresh):
                await queue.put((0, i, sample(i, 0.0)))
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(catch_up())
        batch = await form_batch(queue, asyncio.Event(), Admission(100, 2.0), batch_size, max_wait_s)
        await feeder
        return batch

    return asyncio.run(run())


def test_the_wait_for_a_full_batch_starts_at_the_first_sample_not_at_a_shed_entry():
    """After a step the queue holds what went stale during it; fresh samples come once the
    fetcher catches up, later than max_wait_s after the stale ones. The batch still fills:
    the wait runs from the first fresh sample."""
    batch = queued_then_fresh([10.0] * 3, 3, after_s=0.15, batch_size=3, max_wait_s=0.1)
    assert [offset for _, offset, _ in batch] == list(range(6))
    assert [item.event_id for _, _, item in batch[3:]] == ["e3", "e4", "e5"]


def test_samples_that_expire_while_the_batch_forms_are_shed_and_their_places_filled():
    """A trainer that caught up reads the oldest fresh samples first, just under the bound;
    some cross it before the batch is full. They are shed as it fills, not dropped by
    admission after it (which left half of each batch empty)."""
    batch = queued_then_fresh([1.95] * 2, 3, after_s=0.1, batch_size=3, max_wait_s=1.0)  # stale 50 ms on
    assert [offset for _, offset, _ in batch] == list(range(5))
    assert all(isinstance(item, Shed) for _, _, item in batch[:2])
    assert [item.event_id for _, _, item in batch[2:]] == ["e2", "e3", "e4"]
    admission = Admission(100, 2.0)
    assert all(admission.decide(item, time.time()) == "admit" for _, _, item in batch[2:])
