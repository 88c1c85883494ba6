"""The reference's training schedule, as a pure decision on a series of validation scores:
reduce the learning rate on a plateau, stop early, remember the best evaluation.

`unisar fit` evaluates on its validation samples after each epoch (or every N steps) and
hands each score here; what to do with the learner (scale its learning rates, keep a copy of
its state, stop) stays with the caller. A score is "higher is better"; one that is not
finite never improves.

- improvement: a score above the best so far by more than `min_delta`;
- reduce on plateau: after `lr_patience` evaluations in a row without improvement, multiply
  the learning rate by `factor` (and count afresh: the next cut needs as many again);
- early stop: after `patience` evaluations in a row without improvement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    improved: bool  # the best so far: keep this state
    cut_lr: bool  # multiply the learning rates by the factor now
    stop: bool  # stop training


@dataclass
class Plateau:
    factor: float = 0.5
    lr_patience: int = 1
    patience: int = 3
    min_delta: float = 0.0
    best: float = -math.inf
    best_step: int | None = None
    stale: int = 0  # evaluations since the best
    stale_lr: int = 0  # evaluations since the best or the last cut

    def __post_init__(self) -> None:
        if not 0.0 < self.factor <= 1.0:
            raise ValueError(f"factor: expected a number in (0, 1], got {self.factor}")
        if self.lr_patience < 1 or self.patience < 1:
            raise ValueError(f"patience: expected at least 1, got lr_patience={self.lr_patience}, "
                             f"patience={self.patience}")

    def update(self, step: int, score: float) -> Verdict:
        if math.isfinite(score) and score > self.best + self.min_delta:
            self.best, self.best_step, self.stale, self.stale_lr = score, step, 0, 0
            return Verdict(improved=True, cut_lr=False, stop=False)
        self.stale += 1
        self.stale_lr += 1
        stop = self.stale >= self.patience
        cut = not stop and self.stale_lr >= self.lr_patience
        if cut:
            self.stale_lr = 0
        return Verdict(improved=False, cut_lr=cut, stop=stop)
