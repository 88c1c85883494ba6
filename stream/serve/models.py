"""The model being served, and its hot swap.

`ModelHolder.refresh()` looks in the trainer's checkpoint directory (state.checkpoints: a
checkpoint is complete once it has its final name `ckpt-<step>.pt`; a `.tmp` is a write in
progress and never looked at) for a step newer than the one served. It loads it off the
request path and swaps it in with one reference assignment: a batch takes `holder.current`
once and ranks with it to the end, so no request sees half a swap and none waits for one.
A checkpoint that does not load (corrupt, truncated, another format) is refused with a log
line and remembered by (step, size, mtime), so it is not retried until the file changes;
the model before it keeps serving.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from model.learner import Learner
from state.checkpoints import CheckpointDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    learner: Learner
    step: int
    model_name: str
    path: Path
    written_at: float  # the checkpoint file's mtime, Unix seconds

    def age_s(self) -> float:
        return max(0.0, time.time() - self.written_at)


class ModelHolder:
    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        self.ckpts = CheckpointDir(directory)
        self.device = device
        self.current: Served | None = None
        self.refused: set[tuple[int, int, int]] = set()

    def refresh(self) -> tuple[Served | None, list[str]]:
        """Load the newest checkpoint newer than the one served, falling back to older ones
        (still newer than the served one) when it does not load. Returns the model swapped
        in (None: no change) and a line per checkpoint refused on the way."""
        served = self.current.step if self.current else -1
        refused_now = []
        for step in reversed(self.ckpts.steps()):
            if step <= served:
                break
            path = self.ckpts.file(step)
            try:
                st = os.stat(path)
            except FileNotFoundError:  # the trainer's rotation removed it meanwhile
                continue
            key = (step, st.st_size, st.st_mtime_ns)
            if key in self.refused:
                continue
            try:
                learner = _load(path, self.device)
            except Exception as exc:  # noqa: BLE001 - whatever a bad file raises, keep serving
                self.refused.add(key)
                line = f"checkpoint {path} refused ({type(exc).__name__}: {str(exc)[:200]})"
                log.error("%s; still serving step %s", line, served if served >= 0 else "none")
                refused_now.append(line)
                continue
            self.current = Served(learner, learner.step, learner.model_name, path, st.st_mtime)
            log.info("serving %s at step %d from %s", learner.model_name, learner.step, path)
            return self.current, refused_now
        return None, refused_now


def _load(path: Path, device: str) -> Learner:
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    learner = Learner.from_state_dict(state, device=device)
    learner.model.eval()
    learner.optimizers.clear()  # serving never steps: the Adam moments would only hold memory
    return learner
