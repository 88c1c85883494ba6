"""The models one trainer runs on the same stream, side by side (`--models`), and the
policies that answer "does learning continually pay?".

    --models unisar,sasrec                          two architectures, both continual
    --models unisar,unisar:frozen,unisar:periodic   one architecture under three policies

The first contender is the champion: its checkpoints are the trainer's own (the ones
`unisar serve` reads) and the challengers are compared with it. A contender is named by its
architecture, and by its policy when that is not continual (`unisar-frozen`): names come
from the configuration, never from data, so they are a bounded metric label.

Policies (every contender is scored on every scored batch, on the same candidates):
- continual: learns from every batch after scoring it;
- frozen: learns like continual until it has trained on `frozen_after` samples, then only
  scores (a model trained up to a point and deployed as is);
- periodic: learns like continual until `retrain_every` samples; from then on, every
  `retrain_every` samples a fresh model of the same architecture is trained from scratch
  on the trailing `retrain_window` samples (`retrain_epochs` passes) in a background
  thread, and swapped in when ready, or at `retrain_lag` samples after the retrain started,
  waited for there (the daily batch retraining most teams run). Between swaps it only scores.
With frozen_after == retrain_every (the defaults), frozen and periodic leave the continual
path at the same point, after the same warm-up.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from model.learner import Learner
from model.prequential import SlidingWindow

log = logging.getLogger(__name__)

POLICIES = ("continual", "frozen", "periodic")


@dataclass(frozen=True, slots=True)
class Spec:
    """One contender of `--models`: an architecture of the zoo and a policy."""

    arch: str
    policy: str = "continual"

    @property
    def name(self) -> str:
        return self.arch if self.policy == "continual" else f"{self.arch}-{self.policy}"


def parse_models(text: str, known: frozenset[str] | set[str]) -> list[Spec]:
    """`ARCH[:POLICY],...` to specs, the champion first. Raises ValueError with the reason."""
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        arch, _, policy = part.partition(":")
        arch, policy = arch.strip(), policy.strip() or "continual"
        if arch not in known:
            raise ValueError(f"unknown model {arch!r} (expected one of {', '.join(sorted(known))})")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} of {arch!r} (expected one of {', '.join(POLICIES)})")
        specs.append(Spec(arch, policy))
    if not specs:
        raise ValueError("expected at least one model, e.g. unisar or unisar,unisar:frozen")
    names = [s.name for s in specs]
    if len(set(names)) < len(names):
        raise ValueError(f"a model is named twice in {', '.join(names)}; each ARCH:POLICY may appear once")
    return specs


@dataclass(frozen=True, slots=True)
class Schedule:
    """When frozen and periodic contenders leave the continual path, and how periodic retrains."""

    frozen_after: int = 20_000
    retrain_every: int = 20_000
    retrain_window: int = 40_000
    retrain_epochs: int = 2
    batch_size: int = 512
    # samples after a retrain starts at which its model is swapped in, the trainer waiting for it
    # there if need be (a fixed place in the stream, whatever the machine's speed); None: swap
    # whenever it is ready, never waiting
    retrain_lag: int | None = None


@dataclass
class Contender:
    """One model on the stream: its learner, its prequential window, how much it trained."""

    spec: Spec
    learner: Learner
    schedule: Schedule
    window: SlidingWindow
    trained: int = 0  # samples this contender's current model line learnt from on the stream
    seen: int = 0  # samples the stream offered it to learn from
    swaps: int = 0
    _recent: deque = field(default_factory=deque)  # periodic: the trailing window
    _retrain: threading.Thread | None = None
    _ready: Learner | None = None
    _next_retrain: int = 0
    _swap_at: int | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=self.schedule.retrain_window)
        self._next_retrain = self.schedule.retrain_every

    @property
    def name(self) -> str:
        return self.spec.name

    def learns(self) -> bool:
        """Whether this contender learns from the next batch on the stream."""
        s = self.spec.policy
        if s == "frozen":
            return self.seen < self.schedule.frozen_after
        if s == "periodic":
            return self.seen < self.schedule.retrain_every
        return True

    def offered(self, samples: list, learnt: bool) -> None:
        """After a batch: count it, keep the trailing window, start a retrain when due."""
        self.seen += len(samples)
        self.trained += len(samples) if learnt else 0
        if self.spec.policy != "periodic":
            return
        self._recent.extend(samples)
        if self.seen >= self._next_retrain and self._retrain is None:
            self._next_retrain = self.seen + self.schedule.retrain_every
            lag = self.schedule.retrain_lag
            self._swap_at = None if lag is None else self.seen + lag
            self._start_retrain(list(self._recent))

    def swap_if_ready(self) -> bool:
        """Between steps: a finished retrain's model replaces the current one (waited for, once
        the stream has reached its swap point)."""
        if self._retrain is not None and self._swap_at is not None and self.seen >= self._swap_at:
            self._retrain.join()
        if self._ready is None:
            if self._retrain is not None and not self._retrain.is_alive():  # it failed (logged): the next may start
                self._retrain = self._swap_at = None
            return False
        fresh, self._ready, self._retrain, self._swap_at = self._ready, None, None, None
        fresh.catalogue.load_state_dict(self.learner.catalogue.state_dict())  # records that came meanwhile
        # the model line's step goes on counting, so its newest checkpoint is the newest model
        fresh.step = max(fresh.step, self.learner.step + 1)
        self.learner, self.swaps = fresh, self.swaps + 1
        log.info("%s: swapped in a model retrained from scratch (swap %d)", self.name, self.swaps)
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._retrain is not None:
            self._retrain.join()

    def _start_retrain(self, samples: list) -> None:
        fresh = fresh_like(self.learner, seed=self.learner.seed + 1 + self.swaps)

        def run() -> None:
            try:
                retrain(fresh, samples, self.schedule, self._stopping)
            except Exception:  # noqa: BLE001 - the current model keeps serving; the next retrain tries again
                log.exception("%s: the retrain failed; keeping the current model", self.name)
                return
            if not self._stopping.is_set():
                self._ready = fresh

        self._retrain = threading.Thread(target=run, name=f"retrain-{self.name}", daemon=True)
        self._retrain.start()
        log.info("%s: retraining from scratch on the latest %d samples", self.name, len(samples))

    def state_dict(self) -> dict:
        return {"trained": self.trained, "seen": self.seen, "swaps": self.swaps, "next_retrain": self._next_retrain}

    def load_state_dict(self, state: dict) -> None:
        self.trained, self.seen = int(state.get("trained", 0)), int(state.get("seen", 0))
        self.swaps = int(state.get("swaps", 0))
        self._next_retrain = int(state.get("next_retrain", self.schedule.retrain_every))


def fresh_like(learner: Learner, seed: int) -> Learner:
    """A learner of the same model, configuration and training settings, from scratch, that
    knows the same item catalogue."""
    state = learner.state_dict()
    fresh = Learner(state["model_name"], device=str(learner.device), **{**state["learner"], "seed": seed},
                    **state["config"])
    fresh.catalogue.load_state_dict(state["catalogue"])
    return fresh


def retrain(learner: Learner, samples: list, schedule: Schedule, stop: threading.Event | None = None) -> None:
    """`schedule.retrain_epochs` shuffled passes over `samples` in batches (learn_many), the
    shuffle drawn from the learner's seed."""
    rng = np.random.default_rng([learner.seed, 7])
    for _ in range(schedule.retrain_epochs):
        order = rng.permutation(len(samples))
        for start in range(0, len(order), schedule.batch_size):
            if stop is not None and stop.is_set():
                return
            learner.learn_many([samples[i] for i in order[start : start + schedule.batch_size]])
