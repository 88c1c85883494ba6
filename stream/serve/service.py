"""The ranking service: what the HTTP endpoints call, with no HTTP in it.

It joins the parts: a request's ids (request_ids.py), the user's history from the view, the
model the holder serves, the micro-batcher that ranks concurrent requests in one forward
pass (ranking.py), and the background loops (changelog follower, checkpoint watcher).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from ops.metrics import ServeMetrics
from stream.contract.history import History
from stream.serve.batcher import MicroBatcher
from stream.serve.models import ModelHolder, Served
from stream.serve.pool import PopularPool
from stream.serve.ranking import RankRequest, score_requests, top_k
from stream.serve.view import HistoryView

log = logging.getLogger(__name__)


class NotReady(Exception):
    """No model to rank with yet (the trainer has written no checkpoint that loads)."""


@dataclass(frozen=True)
class Ranking:
    order: np.ndarray  # candidate indices, best first (at most k)
    scores: np.ndarray  # (C,) every candidate's score
    model_name: str
    step: int
    history: History  # what the ranking used


class RankingService:
    def __init__(self, view: HistoryView, holder: ModelHolder, pool: PopularPool, metrics: ServeMetrics, *,
                 bf16: bool = False, batch_max: int = 64, batch_wait_s: float = 0.002,
                 check_interval_s: float = 5.0, follower=None) -> None:
        self.view, self.holder, self.pool, self.metrics = view, holder, pool, metrics
        self.bf16, self.check_interval_s, self.follower = bf16, check_interval_s, follower
        self.batcher: MicroBatcher[RankRequest, tuple[np.ndarray, Served]] = MicroBatcher(
            self._score_batch, batch_max, batch_wait_s, on_batch=metrics.batch_size.observe)
        metrics.model_age.set_function(lambda: self.holder.current.age_s() if self.holder.current else 0.0)
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.check_model()
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.batcher.run(), name="batcher"),
                       asyncio.create_task(self._watch_checkpoints(), name="checkpoints")]
        if self.follower is not None:
            self._tasks.append(asyncio.create_task(self._follow(), name="changelog"))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:  # the follower's consumer closes in its `finally`
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def ready(self) -> bool:
        return self.holder.current is not None and self.view.ready

    async def check_model(self) -> None:
        swapped, refused = await asyncio.to_thread(self.holder.refresh)
        self.metrics.refused.inc(len(refused))
        if swapped is not None:
            self.metrics.swaps.inc()
            self.metrics.model_step.set(swapped.step)

    async def _watch_checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self.check_model()
            except Exception:  # noqa: BLE001 - a directory gone for a moment: look again next time
                log.exception("checking for a newer checkpoint failed")

    async def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                await self.follower.run(self._stop)
            except Exception:  # noqa: BLE001 - the broker went away: keep serving, follow again
                log.exception("following the changelog failed; retrying in 2 s")
                await asyncio.sleep(2)

    # ------------------------------------------------------------- ranking

    def _score_batch(self, requests: list[RankRequest]) -> list[tuple[np.ndarray, Served]]:
        served = self.holder.current  # once: the whole batch ranks with one model
        if served is None:
            raise NotReady("no model yet: no checkpoint in the checkpoint directory loads")
        return [(s, served) for s in score_requests(served.learner, requests, self.bf16)]

    def history(self, user: int) -> History:
        return self.view.get(user)

    async def rank(self, user: int, query: tuple[int, ...], candidates: np.ndarray, k: int) -> Ranking:
        if self.holder.current is None:
            raise NotReady("no model yet: no checkpoint in the checkpoint directory loads")
        request = RankRequest(user, self.view.get(user), query, candidates)
        scores, served = await self.batcher.submit(request)
        return Ranking(top_k(scores, k), scores, served.model_name, served.step, request.history)

    async def recommend(self, user: int, query: tuple[int, ...], k: int,
                        include_seen: bool = False) -> tuple[np.ndarray, Ranking | None]:
        """The pool's items and their ranking for the user (None: nothing to rank), without the
        items the user's history holds as clicked unless `include_seen`."""
        items = np.array(self.pool.top(), np.int64)
        if not include_seen and len(items):
            history = self.view.get(user)
            seen = [b.item for b in history.rec] + [c for b in history.search for c in b.clicks]
            items = items[~np.isin(items, np.array(seen, np.int64))]
        if not len(items):
            if self.holder.current is None:
                raise NotReady("no model yet: no checkpoint in the checkpoint directory loads")
            return items, None
        return items, await self.rank(user, query, items, k)
