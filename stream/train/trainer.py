"""The continual trainer: samples in, test-then-train steps, checkpoints, metrics.

Two asyncio tasks share a bounded queue (stream.train.fetch): the fetcher polls
`sar.samples` in a consumer group and decodes, the trainer forms mini-batches (size or
maximum wait) and runs each step in a worker thread, so the event loop never blocks on torch
and the consumer keeps heartbeating however long a step takes.

A step is test-then-train for every model of `--models` (stream.train.contenders): the
batch's scored rows get their candidates once (stream.train.candidates), each model scores
them (prequential HR/NDCG over its sliding window), then each model that learns takes one
joint optimiser step on the batch. One model is the default (`--model`).

Progress lives in the checkpoint: model, optimiser, id maps, step and the next offset of
every samples partition, written atomically (state.checkpoints); each challenger's model
beside it, in `challengers/NAME`. A restart loads the newest checkpoints and seeks to their
offsets, so a kill -9 loses at most one checkpoint interval of training. Offsets are also
committed to the group after each checkpoint, for lag monitoring only.

With `--world-size` W > 1 this trainer runs as one rank of W: stream.train.scaleout.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from model.batch import collate, is_ranked
from model.learner import Learner
from model.metrics import hit_rate, ndcg
from model.precision import name as precision_name
from model.prequential import SlidingWindow, scored
from model.registry import MODELS
from ops.metrics import TrainerMetrics
from ops.settings import Settings
from state.checkpoints import CheckpointDir, load_file
from stream.kafka import aio_kwargs
from stream.train.admission import ADMIT, STALE, Admission
from stream.train.candidates import ItemPool, mentioned, shared_negatives
from stream.train.catalogue import CatalogueFollower
from stream.train.contenders import Contender, Schedule, Spec, parse_models
from stream.train.fetch import Shed, fetch, next_batch
from stream.train.ledger import Ledger
from stream.train.offline_eval import OfflineEvaluator
from stream.train.reporting import export_tables, export_terms, export_windows

log = logging.getLogger(__name__)
UNLEARNABLE = "unlearnable"
EXPOSURE = "exposure"
CHALLENGERS = "challengers"  # the challengers' checkpoints: <checkpoint_dir>/challengers/<name>


def _collates(sample) -> bool:
    try:
        collate([sample])
        return True
    except Exception:  # noqa: BLE001 - the question is only whether it can
        return False


def new_learner(settings: Settings, model: str | None = None) -> Learner:
    config = dict(n_users=settings.n_users, n_items=settings.n_items, n_words=settings.n_words)  # every model has them
    return Learner(model or settings.model, seed=settings.seed, device=settings.device, exposures=settings.exposures,
                   precision=settings.train_precision, **config)


def contender_specs(settings: Settings) -> list[Spec]:
    """The models this trainer runs, the champion first: `--models`, else `--model` alone."""
    return parse_models(settings.models or settings.model, frozenset(MODELS))


class ContinualTrainer(ConsumerRebalanceListener):
    sync = None  # the collectives of a data-parallel rank (stream.train.scaleout); one process: none
    def __init__(self, settings: Settings, metrics: TrainerMetrics, heldout: list | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        specs = contender_specs(settings)
        if len(specs) > 1 and self.sync is not None:
            raise ValueError("--models runs several models in one process; with --world-size > 1 give one --model")
        self.schedule = Schedule(settings.frozen_after, settings.retrain_every, settings.retrain_window,
                                 settings.retrain_epochs, settings.batch_size, settings.retrain_lag)
        self.ckpts = CheckpointDir(settings.checkpoint_dir, keep=settings.keep_checkpoints)
        state = self._load_checkpoint()
        self.admission = Admission(settings.dedup_window, settings.max_staleness_s)
        self.offsets: dict[int, int] = {}
        self.pool = ItemPool(settings.n_items)
        if state is not None:
            self.offsets = {int(p): int(o) for p, o in state.get("offsets", {}).items()}
            if "admission" in state:
                self.admission.load_state_dict(state["admission"])
            if "pool" in state:
                self.pool.load_state_dict(state["pool"])
        self.contenders = [self._contender(specs[0], state)]
        for spec in specs[1:]:
            self.contenders.append(self._contender(spec, self._challenger_dir(spec.name).load_latest()))
        if state is not None:
            log.info("resumed from checkpoint at step %d, offsets %s", self.learner.step, self.offsets)
        log.info("training forward pass in %s (--train-precision %s)", precision_name(self.learner.bf16),
                 settings.train_precision)
        limits = {c.learner.limits for c in self.contenders}
        if len(limits) > 1:
            raise ValueError(f"--models: the models read histories of different lengths ({limits}); "
                             "they must rank the same rows")
        self.limits = self.learner.limits
        self.items = CatalogueFollower(settings, int(state.get("items_offset", 0)) if state else 0)
        self.offline = OfflineEvaluator(metrics, heldout or [], settings.seed, settings.device)
        self.heldout = self.offline.heldout
        self.ledger = Ledger(settings.ledger) if settings.ledger else None
        self._consumer: AIOKafkaConsumer | None = None
        self._steps_since_ckpt = 0
        self._last_ckpt = time.monotonic()
        self._evictions_seen: dict[str, int] = {}
        metrics.name_models([c.name for c in self.contenders])
        for c in self.contenders:
            metrics.model_step.labels(c.name).set(c.learner.step)

    def _contender(self, spec: Spec, state: dict | None) -> Contender:
        s = self.settings
        given = state is None and spec.policy == "frozen" and s.frozen_from is not None
        if given:  # a model trained elsewhere, only scored here
            try:
                state = load_file(s.frozen_from)
            except Exception as exc:  # noqa: BLE001 - said in one line by the command
                raise ValueError(f"--frozen-from {s.frozen_from}: cannot load it ({exc})") from exc
        if state is None:
            learner = new_learner(s, spec.arch)
        else:
            if state.get("model_name") != spec.arch:
                raise ValueError(f"its newest checkpoint holds model {state.get('model_name')!r}, --model asks for "
                                 f"{spec.arch!r} (as {spec.name}); give another --checkpoint-dir or the checkpoint's "
                                 "model")
            learner = Learner.from_state_dict(state, device=s.device)
            learner.asked_exposures = s.exposures  # training policies of this run, not of the model
            learner.set_precision(s.train_precision)
        contender = Contender(spec, learner, self.schedule, SlidingWindow(s.window))
        if state is not None and "contender" in state and not given:
            contender.load_state_dict(state["contender"])
        if given:
            contender.seen = self.schedule.frozen_after  # past its learning
        return contender

    def _challenger_dir(self, name: str) -> CheckpointDir:
        return CheckpointDir(Path(self.settings.checkpoint_dir) / CHALLENGERS / name, keep=self.settings.keep_checkpoints)

    @property
    def learner(self) -> Learner:
        """The champion's learner: the one checkpointed for serving and evaluated offline."""
        return self.contenders[0].learner

    @learner.setter
    def learner(self, learner: Learner) -> None:
        self.contenders[0].learner = learner

    def _load_checkpoint(self) -> dict | None:
        return self.ckpts.load_latest()

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **aio_kwargs(self.settings), group_id=self.settings.trainer_group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=2000, session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000, max_poll_interval_ms=300_000)

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._consumer = self._new_consumer()
        self._consumer.subscribe([s.samples_topic], listener=self)
        await self._consumer.start()
        queue: asyncio.Queue = asyncio.Queue(maxsize=s.batch_size)
        fetcher = asyncio.create_task(self._fetch(queue, stop))
        # Data-parallel ranks would each take catalogue records at their own time, and their
        # models must stay identical: the catalogue is read by a single trainer only.
        followers = [asyncio.create_task(self.items.run(stop))] if self.sync is None else []
        try:
            await self._train(queue, stop, fetcher, *followers)
        finally:
            for task in (fetcher, *followers):
                task.cancel()
            await asyncio.gather(fetcher, *followers, return_exceptions=True)
            await self._end_offline_eval()
            for c in self.contenders:
                await asyncio.to_thread(c.stop)
            if self._steps_since_ckpt:
                await self._checkpoint()
            await self._consumer.stop()
            if self.ledger is not None:
                self.ledger.close()
        log.info("trainer stopped cleanly at step %d", self.learner.step)

    async def on_partitions_assigned(self, assigned) -> None:
        for tp in assigned:
            if tp.partition in self.offsets:
                self._consumer.seek(tp, self.offsets[tp.partition])

    async def on_partitions_revoked(self, revoked) -> None:
        # Progress is in the checkpoint, not in the group's offsets; only stop reporting lag.
        for tp in revoked:
            try:
                self.metrics.lag.remove(str(tp.partition))
            except KeyError:
                pass

    # ---- fetch ----------------------------------------------------------------------------

    async def _fetch(self, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        await fetch(self._consumer, self.admission, queue, stop, self.metrics.lag, self.offsets)

    # ---- train ----------------------------------------------------------------------------

    async def _next_batch(self, queue: asyncio.Queue, stop: asyncio.Event) -> list:
        return await next_batch(queue, stop, self.admission, self.settings.batch_size, self.settings.max_wait_s)

    async def _train(self, queue: asyncio.Queue, stop: asyncio.Event, *readers: asyncio.Task) -> None:
        while not stop.is_set():
            for reader in readers:
                if reader.done():
                    reader.result()  # surface a reader's crash
            self._take_items()
            batch = await self._next_batch(queue, stop)
            if not batch:  # idle: make sure the newest model has offline figures
                if self.heldout and self.offline.evaluated_step < self.learner.step:
                    self._start_offline_eval()
                continue
            started = time.monotonic()
            samples = self._admit(batch)
            terms = await self._step(samples) if samples else None
            for partition, offset, _ in batch:  # skipped samples are consumed too
                self.offsets[partition] = max(self.offsets.get(partition, 0), offset + 1)
            if terms is None:
                continue
            self._record(samples, terms, time.monotonic() - started)
            self._steps_since_ckpt += 1
            if (self._steps_since_ckpt >= self.settings.checkpoint_every_steps
                    or time.monotonic() - self._last_ckpt >= self.settings.checkpoint_every_s):
                await self._checkpoint()
            if (self.heldout and self.learner.step % self.settings.offline_every_steps == 0
                    and self.offline.evaluated_step < self.learner.step):
                self._start_offline_eval()

    def _take_items(self) -> None:
        """Catalogue records read since the last step join the model's catalogue (between
        steps, never under one)."""
        read = len(self.items.pending)
        records = self.items.drain()
        if read:
            for c in self.contenders:
                c.learner.add_items(records)
            self.metrics.catalogue.labels("applied").inc(len(records))
            self.metrics.catalogue.labels("dead_letter").inc(read - len(records))
            self.metrics.catalogue_items.set(len(self.learner.catalogue))

    def _admit(self, batch: list) -> list:
        """The batch's samples worth learning from. Decided here, between steps, so the
        admission memory in a checkpoint matches the offsets saved with it."""
        now, kept = time.time(), []
        for _, _, sample in batch:
            if isinstance(sample, Shed):
                self.metrics.skipped.labels(STALE).inc(sample.count)
                continue
            verdict = sample if isinstance(sample, str) else self.admission.decide(sample, now)
            if verdict == ADMIT:
                kept.append(sample)
            else:
                self.metrics.skipped.labels(verdict).inc()
        return kept

    async def _step(self, samples: list) -> dict[str, float]:
        """One test-then-train step. If it fails, the samples that cannot be collated alone
        are skipped (counted as unlearnable) and the step runs on the rest; a failure that no
        sample explains is not the data's fault, and stops the trainer."""
        try:
            return await asyncio.to_thread(self._test_then_train, samples)
        except Exception:
            learnable = [s for s in samples if _collates(s)]
            if len(learnable) == len(samples):
                raise
            log.exception("step failed; skipping %d sample(s) that cannot be learnt from",
                          len(samples) - len(learnable))
            self.metrics.skipped.labels(UNLEARNABLE).inc(len(samples) - len(learnable))
            return await asyncio.to_thread(self._test_then_train, learnable)

    def _test_then_train(self, samples: list) -> dict[str, dict[str, float] | None]:
        """In a worker thread, for every model: score first (the batch is unseen), then learn
        from it if its policy says so. Returns each model's loss terms (None: it did not
        learn). The first batches are not scored: 99 negatives need a pool of 200 items."""
        share = self.settings.score_share
        tested = samples if share >= 1 else [s for s in samples if scored(s.event_id, share)]
        batch = collate(tested, self.limits)  # the clicks scored (all of them: also the ones learnt)
        self.pool.add(mentioned(samples))
        negatives = shared_negatives(tested, self.limits, self.pool, self.settings.seed) if len(batch) else None
        terms, figures, seconds = {}, {}, {}
        for c in self.contenders:
            started = time.perf_counter()
            c.swap_if_ready()
            if negatives is not None:
                known = c.learner.ids["items"]
                for task, scores in c.learner.score(batch, negatives=negatives).items():
                    c.window.add(task, scores.numpy(), cold=known.find(batch.tasks[task].target) == 0)
                    figures[c.name, task] = (len(scores), hit_rate(scores.numpy(), 10), ndcg(scores.numpy(), 10))
            learns = c.learns()
            if learns:
                full = batch
                if c.learner.exposures or len(tested) < len(samples):  # rec exposures: labelled negatives
                    full = collate(samples, self.limits, exposures=c.learner.exposures)
                terms[c.name] = c.learner.learn_many(full, self.sync)
            else:
                terms[c.name] = None
            c.offered(samples, learns)
            seconds[c.name] = time.perf_counter() - started
        if self.ledger is not None:
            self.ledger.write(samples, figures, {c.name: c.trained for c in self.contenders}, seconds,
                              {c.name: c.swaps for c in self.contenders if c.spec.policy == "periodic"})
        return terms

    def _record(self, samples: list, terms: dict[str, dict[str, float] | None], seconds: float) -> None:
        m = self.metrics
        m.step_seconds.observe(seconds)
        m.steps.inc()
        m.batch_size.set(len(samples))
        now = time.time()
        counted = [s for s in samples if is_ranked(s) or (self.learner.exposures and s.task == "rec")]
        m.skipped.labels(EXPOSURE).inc(len(samples) - len(counted))  # rec exposures without a click, left out
        if terms.get(self.contenders[0].name) is not None:
            for s in counted:
                if s.ingest_ms:
                    m.freshness.observe(max(0.0, now - s.ingest_ms / 1000))
        for c in self.contenders:
            m.model_step.labels(c.name).set(c.learner.step)
            learnt = terms.get(c.name)
            if learnt is not None:
                for s in counted:
                    m.samples.labels(c.name, s.task).inc()
                export_terms(m, c.name, learnt)
        export_windows(m, {c.name: c.window.result() for c in self.contenders})
        export_tables(m, self.learner.ids, self._evictions_seen)

    # ---- checkpoints and offline evaluation ----------------------------------------------

    async def _checkpoint(self) -> None:
        """The champion's checkpoint holds the stream's progress (offsets, admission memory,
        catalogue offset, item pool); each challenger's, written just before it, its model. A
        crash between the two leaves a challenger up to one interval ahead of the offsets it
        resumes from: it learns those samples twice."""
        for c in self.contenders[1:]:
            ckpt = {**c.learner.state_dict(), "contender": c.state_dict()}
            await asyncio.to_thread(self._challenger_dir(c.name).save, ckpt, c.learner.step)
        state = self.learner.state_dict()
        state["offsets"] = {str(p): o for p, o in self.offsets.items()}
        state["admission"] = self.admission.state_dict()
        state["items_offset"] = self.items.next_offset
        state["pool"] = self.pool.state_dict()
        state["contender"] = self.contenders[0].state_dict()
        await asyncio.to_thread(self.ckpts.save, state, self.learner.step)
        self._steps_since_ckpt = 0
        self._last_ckpt = time.monotonic()
        self.metrics.checkpoints.inc()
        self.metrics.last_checkpoint.set(time.time())
        await self._commit_offsets()

    async def _commit_offsets(self) -> None:
        """Commit the offsets of the partitions this consumer holds to its group: for lag
        monitoring only, the checkpoint holds the truth."""
        from aiokafka import TopicPartition

        owned = {tp.partition for tp in self._consumer.assignment()}
        offsets = {TopicPartition(self.settings.samples_topic, p): o for p, o in self.offsets.items() if p in owned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - informational only
            log.warning("could not commit trainer offsets to the group: %s", exc)

    async def _end_offline_eval(self) -> None:
        await asyncio.to_thread(self.offline.stop)

    def _start_offline_eval(self) -> None:
        self.offline.start(self.learner, self.contenders[0].name)
