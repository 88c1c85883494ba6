from __future__ import annotations

import asyncio
import time

import pytest

from stream.serve.batcher import MicroBatcher


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_a_batch_and_get_their_own_results():
    sizes = []

    def square(xs):
        sizes.append(len(xs))
        time.sleep(0.01)
        return [x * x for x in xs]

    async def main():
        batcher = MicroBatcher(square, max_batch=8, max_wait_s=0.005)
        loop = asyncio.create_task(batcher.run())
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        finally:
            loop.cancel()

    assert run(main()) == [i * i for i in range(20)]
    assert max(sizes) == 8 and sum(sizes) == 20 and len(sizes) <= 4


def test_a_lone_request_waits_at_most_the_bounded_wait():
    async def main():
        batcher = MicroBatcher(lambda xs: xs, max_batch=64, max_wait_s=0.02)
        loop = asyncio.create_task(batcher.run())
        try:
            await batcher.submit(0)  # warm the thread pool
            started = time.perf_counter()
            await batcher.submit(1)
            return time.perf_counter() - started
        finally:
            loop.cancel()

    assert run(main()) < 0.2


def test_a_failing_batch_fails_its_requests_and_the_loop_goes_on():
    def fragile(xs):
        if -1 in xs:
            raise ValueError("bad batch")
        return xs

    async def main():
        batcher = MicroBatcher(fragile, max_batch=1, max_wait_s=0)
        loop = asyncio.create_task(batcher.run())
        try:
            with pytest.raises(ValueError, match="bad batch"):
                await batcher.submit(-1)
            return await batcher.submit(5)
        finally:
            loop.cancel()

    assert run(main()) == 5
