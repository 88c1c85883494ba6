"""The continual trainer as rank r of W: data-parallel training in lockstep rounds.

  - partitions: static, rank r consumes the samples partitions p with p % W == r through
    `consumer.assign` (no group rebalancing between ranks), from the checkpoint's offsets;
  - rounds: each rank forms its batch (size, or `max_wait_s` from the round's start: an idle
    rank brings an empty one), then the ranks all-gather a header (samples to learn, stop,
    checkpoint due). No rank has samples: an idle round. Otherwise every rank calls
    `learn_many(samples, sync)`, which keeps the learners identical (model.learner). A stop
    on any rank (Ctrl-C on one) stops all after that round, with a final checkpoint;
  - state: rank 0 loads the newest checkpoint and broadcasts it. At a checkpoint the ranks
    all-gather their state digests, offsets and admission memories; rank 0 writes the file
    with every partition's offset and each rank's admission memory (samples are keyed by
    user, so a repeat always comes back to the rank that admitted it). Digests that differ
    are counted and healed: all ranks take rank 0's state;
  - collectives block, so they run in worker threads like the steps: the event loop keeps
    fetching. Offline evaluation runs on rank 0 only.
"""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import torch
from aiokafka import TopicPartition

from model.learner import Learner
from ops.metrics import RankMetrics, TrainerMetrics
from ops.settings import Settings
from stream.train.distributed import (
    GlooSync, WorldMismatch, digest_int, owned_partitions, owns, pack_progress, unpack_progress,
)
from stream.train.trainer import ContinualTrainer

log = logging.getLogger(__name__)
SAMPLES, CONSUMED, STOP, DUE = range(4)  # the round header


class RankTrainer(ContinualTrainer):
    def __init__(self, settings: Settings, metrics: TrainerMetrics, heldout: list | None = None,
                 sync: GlooSync | None = None, rank_metrics: RankMetrics | None = None) -> None:
        self.rank, self.world_size = settings.rank, settings.world_size
        self.sync = sync or GlooSync(settings.rank, settings.world_size, settings.dist_addr, settings.dist_timeout_s)
        self.rank_metrics = rank_metrics or RankMetrics(metrics.registry)
        try:
            super().__init__(settings, metrics, heldout if self.rank == 0 else None)
            self.offsets = {p: o for p, o in self.offsets.items() if owns(p, self.rank, self.world_size)}
            digests = [int(d[0]) for d in self.sync.all_gather(np.array([self._digest()], np.int64))]
            if len(set(digests)) > 1:
                raise WorldMismatch(f"rank {self.rank}: ranks start from different states (digests {digests}); "
                                    "give every rank the same --model, --items, --users, --words and --seed")
        except BaseException:
            self.sync.close()
            raise
        self.rank_metrics.rank.set(self.rank)
        self.rank_metrics.world_size.set(self.world_size)
        self.rank_metrics.digest.set(digests[0])

    def _digest(self) -> int:
        return digest_int(self.learner.digest())

    def _load_checkpoint(self) -> dict | None:
        """Rank 0's newest checkpoint on every rank, with this rank's admission memory."""
        state = self.sync.broadcast_state(self.ckpts.load_latest() if self.rank == 0 else None)
        if state is not None:
            ranks = state.pop("admission_by_rank", None)
            if ranks is not None and state.get("world_size") == self.world_size:
                state["admission"] = {"recent": ranks[str(self.rank)]}
            # else: the merged memory of all ranks (or a one-process checkpoint's): bigger, still right
        return state

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer = self._new_consumer()
        clean = False
        try:
            await self._consumer.start()
            await self._assign()
            queue: asyncio.Queue = asyncio.Queue(maxsize=4 * self.settings.batch_size)
            fetcher = asyncio.create_task(self._fetch(queue, stop))
            try:
                await self._train(queue, stop, fetcher)
                clean = True
            finally:
                fetcher.cancel()
                await asyncio.gather(fetcher, return_exceptions=True)
                await self._end_offline_eval()
            if self._steps_since_ckpt:  # every rank: the same steps, so the same decision
                await self._checkpoint()
        finally:
            await self._consumer.stop()
            self.sync.close()
        if clean:
            log.info("rank %d stopped cleanly at step %d", self.rank, self.learner.step)

    async def _assign(self) -> None:
        topic = self.settings.samples_topic
        await self._consumer.topics()  # fresh metadata
        n = len(self._consumer.partitions_for_topic(topic) or ())
        if n < self.world_size:
            raise WorldMismatch(f"{topic}: expected at least {self.world_size} partitions (one per rank), got {n}")
        owned = [TopicPartition(topic, p) for p in owned_partitions(n, self.rank, self.world_size)]
        self._consumer.assign(owned)
        for tp in owned:
            if tp.partition in self.offsets:
                self._consumer.seek(tp, self.offsets[tp.partition])
        log.info("rank %d of %d consumes %s partitions %s from offsets %s", self.rank, self.world_size, topic,
                 [tp.partition for tp in owned], self.offsets)

    # ---- rounds ---------------------------------------------------------------------------

    async def _round_batch(self, queue: asyncio.Queue, stop: asyncio.Event) -> list:
        """Up to batch_size samples, waiting at most max_wait_s: an idle rank brings none."""
        batch: list = []
        deadline = time.monotonic() + self.settings.max_wait_s
        while len(batch) < self.settings.batch_size and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not queue.empty():  # take what is there without a wait_for per item
                batch.append(queue.get_nowait())
                continue
            try:
                batch.append(await asyncio.wait_for(queue.get(), min(left, 0.2)))
            except asyncio.TimeoutError:
                continue
        return batch

    async def _train(self, queue: asyncio.Queue, stop: asyncio.Event, fetcher: asyncio.Task) -> None:
        s = self.settings
        while True:
            if fetcher.done():
                fetcher.result()  # surface a fetcher crash
            batch = await self._round_batch(queue, stop)
            samples = self._admit(batch)
            due = (self._steps_since_ckpt + 1 >= s.checkpoint_every_steps
                   or time.monotonic() - self._last_ckpt >= s.checkpoint_every_s)
            header = np.array([len(samples), len(batch), stop.is_set(), due], np.int64)
            heads = np.stack(await asyncio.to_thread(self.sync.all_gather, header))
            stepped = False
            if heads[:, SAMPLES].sum():
                started, before = time.monotonic(), self.learner.step
                terms = await asyncio.to_thread(self._test_then_train, samples)
                stepped = self.learner.step > before  # the same on every rank
                if stepped or any(terms.values()):
                    self._record(samples, terms, time.monotonic() - started)
            self.rank_metrics.rounds.labels("step" if stepped else "idle").inc()
            for partition, offset, _ in batch:  # skipped samples are consumed too
                self.offsets[partition] = max(self.offsets.get(partition, 0), offset + 1)
            if stepped:
                self._steps_since_ckpt += 1
                if heads[:, DUE].any():
                    await self._checkpoint()
                if self.heldout and self.learner.step % s.offline_every_steps == 0:
                    self._start_offline_eval()
            if heads[:, STOP].any():
                return

    # ---- checkpoints ----------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        """Collective: every rank calls it in the same round; rank 0 writes the file."""
        recent = self.admission.state_dict()["recent"]
        gathered = await asyncio.to_thread(
            lambda: self.sync.all_gather(pack_progress(self._digest(), self.offsets, recent)))
        ranks = [unpack_progress(g) for g in gathered]
        digests = [d for d, _, _ in ranks]
        if len(set(digests)) > 1:
            log.error("rank %d: the ranks' states diverged at step %d (digests %s); taking rank 0's",
                      self.rank, self.learner.step, digests)
            self.rank_metrics.divergences.inc()
            state = await asyncio.to_thread(self.sync.broadcast_state,
                                            self.learner.state_dict() if self.rank == 0 else None)
            if self.rank != 0:
                self.learner = Learner.from_state_dict(state, device=self.settings.device)
        self.rank_metrics.digest.set(digests[0])
        if self.rank == 0:
            offsets = {p: o for _, rank_offsets, _ in ranks for p, o in rank_offsets.items()}
            state = self.learner.state_dict()
            state["offsets"] = {str(p): o for p, o in sorted(offsets.items())}
            state["admission"] = {"recent": torch.cat([a for _, _, a in ranks])}  # all ranks': for any W
            state["admission_by_rank"] = {str(r): a for r, (_, _, a) in enumerate(ranks)}
            state["world_size"] = self.world_size
            await asyncio.to_thread(self.ckpts.save, state, self.learner.step)
            self.metrics.checkpoints.inc()
            self.metrics.last_checkpoint.set(time.time())
        self._steps_since_ckpt = 0
        self._last_ckpt = time.monotonic()
        await self._commit_offsets()  # each rank its own partitions
