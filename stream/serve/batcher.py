"""Micro-batching: concurrent requests share one forward pass.

A request waits at most `max_wait_s` for others to join it (or until `max_batch` have), then
its batch runs in a worker thread while the event loop goes on accepting requests; those
form the next batch. Under load, batches grow by themselves (the forward pass is the wait);
alone, a request pays at most `max_wait_s`. One batch runs at a time: the model's threads
already use the cores, two passes at once would only fight over them.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(self, run_batch: Callable[[list[T]], list[R]], max_batch: int = 64, max_wait_s: float = 0.002,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"expected max_batch >= 1 and max_wait_s >= 0, got {max_batch} and {max_wait_s}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] = asyncio.Queue()

    async def submit(self, item: T) -> R:
        """The result for `item`, computed in some batch; raises what its batch raised."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def run(self) -> None:
        """Form and run batches until cancelled."""
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            live = [(item, f) for item, f in batch if not f.done()]  # a client that gave up
            if not live:
                continue
            if self.on_batch:
                self.on_batch(len(live))
            try:
                results = await asyncio.to_thread(self.run_batch, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - the batch's requests fail, the loop goes on
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for (_, f), result in zip(live, results):
                if not f.done():
                    f.set_result(result)
