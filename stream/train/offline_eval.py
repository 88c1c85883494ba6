"""The trainer's offline evaluation: a snapshot of the champion scored on the held-out
samples with the paper's protocol (model.evaluation), in a background thread so training
goes on meanwhile; one at a time, and stoppable at its next batch."""
from __future__ import annotations

import logging
import threading
import time

from model.evaluation import evaluable, evaluate_samples
from model.learner import Learner
from ops.metrics import TrainerMetrics
from stream.train.reporting import export_quality

log = logging.getLogger(__name__)


def _until(stop: threading.Event, items):
    """`items` until `stop` is set."""
    for item in items:
        if stop.is_set():
            return
        yield item


class OfflineEvaluator:
    def __init__(self, metrics: TrainerMetrics, heldout: list, seed: int, device: str) -> None:
        self.metrics, self.heldout, self.seed, self.device = metrics, evaluable(heldout), seed, device
        self.evaluated_step = -1  # model step of the newest evaluation started
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self, learner: Learner, model: str) -> None:
        """Evaluate a snapshot of `learner` (exported under the label `model`), unless an
        evaluation is still running."""
        if not self.heldout or (self._thread is not None and self._thread.is_alive()):
            return
        snapshot = Learner.from_state_dict(learner.state_dict(), device=self.device)
        self.evaluated_step = snapshot.step
        self._thread = threading.Thread(target=self._run, args=(snapshot, model), name="offline-eval", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop a running evaluation at its next batch and wait for it: a thread still inside
        torch when the interpreter exits aborts the process (SIGABRT)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, snapshot: Learner, model: str) -> None:
        started = time.monotonic()
        try:
            results = evaluate_samples(snapshot, self.heldout, seed=self.seed,
                                       progress=lambda starts: _until(self._stopping, starts))
        except ValueError as exc:  # e.g. a held-out set with too few items for 99 negatives
            log.error("offline evaluation at step %d skipped: %s", snapshot.step, exc)
            return
        if self._stopping.is_set():  # stopped part way: the figures would be of a part
            return
        self.metrics.offline_eval_seconds.observe(time.monotonic() - started)
        self.metrics.last_offline_eval.set(time.time())
        for task, result in results.items():
            export_quality(self.metrics, model, task, "offline", result)
        self.metrics.offline_eval_step.set(snapshot.step)  # after the figures: they belong to it
        log.info("offline evaluation at step %d: %s", snapshot.step, results)
