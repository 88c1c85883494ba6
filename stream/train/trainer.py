"""The continual trainer: samples in, test-then-train steps, checkpoints, metrics.

Two asyncio tasks share a bounded queue. The fetcher polls `sar.samples` in a consumer
group and decodes (queueing, in place of a sample, the reason it is skipped: undecodable,
or stale past `--max-staleness`, read from the header alone); the trainer forms
mini-batches (size or maximum wait), and runs each step in a worker thread: score the batch first (prequential HR/NDCG over a sliding
window), then one joint optimiser step. The event loop never blocks on torch, so the
consumer keeps heartbeating however long a step takes.

Progress lives in the checkpoint: model, optimiser, id maps, step and the next offset of
every samples partition, written atomically (state.checkpoints). A restart loads the newest
checkpoint and seeks to its offsets, so a kill -9 loses at most one checkpoint interval of
training. Offsets are also committed to the group after each checkpoint, for lag
monitoring only.

With `--world-size` W > 1 this trainer runs as one rank of W: stream.train.scaleout.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from model.batch import collate, is_ranked
from model.evaluation import evaluable, evaluate_samples
from model.learner import Learner
from model.prequential import SlidingWindow, scored
from ops.metrics import TrainerMetrics
from ops.settings import Settings
from state.checkpoints import CheckpointDir
from stream.contract import samples as sample_codec
from stream.train.admission import ADMIT, STALE, UNDECODABLE, Admission
from stream.train.catalogue import CatalogueFollower
from stream.kafka import aio_kwargs

log = logging.getLogger(__name__)
TERMS = {"bce": "click", "rel": "rel", "align": "align"}
UNLEARNABLE = "unlearnable"
EXPOSURE = "exposure"


@dataclass(frozen=True, slots=True)
class Shed:
    """A run of `count` stale samples the fetcher skipped, up to its entry's offset."""

    count: int


def _until(stop: threading.Event, items):
    """`items` until `stop` is set."""
    for item in items:
        if stop.is_set():
            return
        yield item


def _collates(sample) -> bool:
    try:
        collate([sample])
        return True
    except Exception:  # noqa: BLE001 - the question is only whether it can
        return False


def new_learner(settings: Settings) -> Learner:
    config = dict(n_users=settings.n_users, n_items=settings.n_items, n_words=settings.n_words)  # every model has them
    return Learner(settings.model, seed=settings.seed, device=settings.device, exposures=settings.exposures,
                   precision=settings.train_precision, **config)


class ContinualTrainer(ConsumerRebalanceListener):
    sync = None  # the collectives of a data-parallel rank (stream.train.scaleout); one process: none
    def __init__(self, settings: Settings, metrics: TrainerMetrics, heldout: list | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ckpts = CheckpointDir(settings.checkpoint_dir, keep=settings.keep_checkpoints)
        state = self._load_checkpoint()
        self.admission = Admission(settings.dedup_window, settings.max_staleness_s)
        if state is None:
            self.learner = new_learner(settings)
            self.offsets: dict[int, int] = {}
        else:
            if state.get("model_name") != settings.model:
                raise ValueError(f"its newest checkpoint holds model {state.get('model_name')!r}, --model asks for "
                                 f"{settings.model!r}; give another --checkpoint-dir or the checkpoint's --model")
            self.learner = Learner.from_state_dict(state, device=settings.device)
            self.learner.asked_exposures = settings.exposures  # training policies of this run, not of the model
            self.learner.set_precision(settings.train_precision)
            self.offsets = {int(p): int(o) for p, o in state.get("offsets", {}).items()}
            if "admission" in state:
                self.admission.load_state_dict(state["admission"])
            log.info("resumed from checkpoint at step %d, offsets %s", self.learner.step, self.offsets)
        self.items = CatalogueFollower(settings, int(state.get("items_offset", 0)) if state else 0)
        self.window = SlidingWindow(settings.window)
        self.heldout = evaluable(heldout or [])
        self._consumer: AIOKafkaConsumer | None = None
        self._offline: threading.Thread | None = None
        self._evaluated_step = -1  # model step of the newest offline evaluation started
        self._stopping = threading.Event()  # tells a running offline evaluation to give up
        self._steps_since_ckpt = 0
        self._last_ckpt = time.monotonic()
        self._evictions_seen: dict[str, int] = {}
        metrics.model_step.set(self.learner.step)

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
            if self._steps_since_ckpt:
                await self._checkpoint()
            await self._consumer.stop()
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
        while not stop.is_set():
            fetched = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for tp, records in fetched.items():
                shed, last = 0, -1  # a run of stale records: one queue entry for all of them
                for record in records:
                    # shed before decoding, and without queueing each: a trainer that fell behind
                    # must skip samples faster than the stream makes them, and fresh samples must
                    # not wait behind stale ones for a place in a batch
                    if record.value is not None and self.admission.is_stale(
                            sample_codec.ingest_ms_of(record.value), now):
                        shed, last = shed + 1, record.offset
                        continue
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
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                if high is not None:
                    self.metrics.lag.labels(str(tp.partition)).set(max(0, high - await self._consumer.position(tp)))

    # ---- train ----------------------------------------------------------------------------

    async def _next_batch(self, queue: asyncio.Queue, stop: asyncio.Event) -> list:
        batch: list = []
        deadline, samples = None, 0  # entries of shed runs take no place in the batch
        while samples < self.settings.batch_size and not stop.is_set():
            if not queue.empty():  # take what is there without a wait_for per item
                entry = queue.get_nowait()
            else:
                timeout = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    entry = await asyncio.wait_for(queue.get(), timeout)
                except asyncio.TimeoutError:
                    break  # a partial batch after max_wait_s, or none: the caller may do idle work
            partition, offset, item = entry
            # A sample that went stale while it waited in the queue (during the last step) is
            # shed here, taking no place: else a batch would fill with the oldest samples and
            # lose most of them at admission, and the trainer would step on small batches.
            if isinstance(item, sample_codec.Sample) and self.admission.is_stale(item.ingest_ms, time.time()):
                entry = (partition, offset, Shed(1))
            batch.append(entry)
            samples += not isinstance(entry[2], Shed)
            if deadline is None:
                deadline = time.monotonic() + self.settings.max_wait_s
        return batch

    async def _train(self, queue: asyncio.Queue, stop: asyncio.Event, *readers: asyncio.Task) -> None:
        while not stop.is_set():
            for reader in readers:
                if reader.done():
                    reader.result()  # surface a reader's crash
            self._take_items()
            batch = await self._next_batch(queue, stop)
            if not batch:  # idle: make sure the newest model has offline figures
                if self.heldout and self._evaluated_step < self.learner.step:
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
            if self.heldout and self.learner.step % self.settings.offline_every_steps == 0:
                self._start_offline_eval()

    def _take_items(self) -> None:
        """Catalogue records read since the last step join the model's catalogue (between
        steps, never under one)."""
        read = len(self.items.pending)
        records = self.items.drain()
        if read:
            self.learner.add_items(records)
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

    def _test_then_train(self, samples: list) -> dict[str, float]:
        """In a worker thread: score first (the batch is unseen), then learn from it. The
        first batches of a fresh model are not scored: 99 negatives need 100 known items."""
        share = self.settings.score_share
        tested = samples if share >= 1 else [s for s in samples if scored(s.event_id, share)]
        batch = collate(tested, self.learner.limits)  # the clicks scored (all of them: also the ones learnt)
        if len(batch) and len(self.learner.ids["items"]) > 2 * 100:
            known = self.learner.ids["items"]
            for task, scores in self.learner.score(batch).items():
                self.window.add(task, scores.numpy(), cold=known.find(batch.tasks[task].target) == 0)
        if self.learner.exposures or len(tested) < len(samples):  # rec exposures: learnt as labelled negatives
            batch = collate(samples, self.learner.limits, exposures=self.learner.exposures)
        return self.learner.learn_many(batch, self.sync)

    def _record(self, samples: list, terms: dict[str, float], seconds: float) -> None:
        m = self.metrics
        m.step_seconds.observe(seconds)
        m.steps.inc()
        m.model_step.set(self.learner.step)
        m.batch_size.set(len(samples))
        now = time.time()
        for s in samples:
            if not is_ranked(s) and not (self.learner.exposures and s.task == "rec"):
                m.skipped.labels(EXPOSURE).inc()  # a rec exposure without a click, left out
                continue
            m.samples.labels(s.task).inc()
            if s.ingest_ms:
                m.freshness.observe(max(0.0, now - s.ingest_ms / 1000))
        if not all(math.isfinite(v) for v in terms.values()):
            m.nonfinite.inc()
        for key, value in terms.items():
            task, _, term = key.partition("/")
            if term:  # "rec/bce" -> task rec, term click; the joint total has no task
                m.loss.labels(task, TERMS.get(term, term)).set(value)
        for task, result in self.window.result().items():
            self._export_quality(task, "prequential", result)
        for kind, table in self.learner.ids.items():
            m.table_rows.labels(kind).set(table.capacity)
            m.table_used.labels(kind).set(len(table))
            evictions = table.evictions
            evicted = evictions - self._evictions_seen.get(kind, evictions)
            if evicted > 0:
                m.evictions.labels(kind).inc(evicted)
            self._evictions_seen[kind] = evictions

    def _export_quality(self, task: str, mode: str, result: dict) -> None:
        for name, value in result.items():
            metric, _, k = name.partition("@")
            if metric == "HR":
                self.metrics.hr.labels(task, k, mode).set(value)
            elif metric == "NDCG":
                self.metrics.ndcg.labels(task, k, mode).set(value)
            elif metric == "nonfinite":
                self.metrics.nonfinite_rows.labels(task, mode).set(value)
            elif metric == "cold_share":
                self.metrics.cold_share.labels(task, mode).set(value)
            elif metric in ("warm", "cold"):
                for part_name, part_value in value.items():
                    part_metric, _, part_k = part_name.partition("@")
                    if part_metric in ("HR", "NDCG"):
                        gauge = self.metrics.hr_targets if part_metric == "HR" else self.metrics.ndcg_targets
                        gauge.labels(task, part_k, mode, metric).set(part_value)

    # ---- checkpoints and offline evaluation ----------------------------------------------

    async def _checkpoint(self) -> None:
        state = self.learner.state_dict()
        state["offsets"] = {str(p): o for p, o in self.offsets.items()}
        state["admission"] = self.admission.state_dict()
        state["items_offset"] = self.items.next_offset
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
        """Stop a running offline evaluation at its next batch and wait for it: a thread still
        inside torch when the interpreter exits aborts the process (SIGABRT)."""
        self._stopping.set()
        if self._offline is not None:
            await asyncio.to_thread(self._offline.join)

    def _start_offline_eval(self) -> None:
        """Evaluate a snapshot of the model on the held-out set in a background thread, so
        training goes on meanwhile."""
        if self._offline is not None and self._offline.is_alive():
            return
        snapshot = Learner.from_state_dict(self.learner.state_dict(), device=self.settings.device)
        self._evaluated_step = snapshot.step

        def run() -> None:
            started = time.monotonic()
            try:
                results = evaluate_samples(snapshot, self.heldout, seed=self.settings.seed,
                                           progress=lambda starts: _until(self._stopping, starts))
            except ValueError as exc:  # e.g. a held-out set with too few items for 99 negatives
                log.error("offline evaluation at step %d skipped: %s", snapshot.step, exc)
                return
            if self._stopping.is_set():  # stopped part way: the figures would be of a part
                return
            self.metrics.offline_eval_seconds.observe(time.monotonic() - started)
            self.metrics.last_offline_eval.set(time.time())
            for task, result in results.items():
                self._export_quality(task, "offline", result)
            self.metrics.offline_eval_step.set(snapshot.step)  # after the figures: they belong to it
            log.info("offline evaluation at step %d: %s", snapshot.step, results)

        self._offline = threading.Thread(target=run, name="offline-eval", daemon=True)
        self._offline.start()
