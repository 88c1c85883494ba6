"""Atomic checkpoints in a directory: write to a temporary file, fsync, rename, fsync the
directory; keep the newest K. A kill -9 at any moment leaves either the old set or the old
set plus one complete new file, never a torn one (a leftover temporary file is ignored, and
removed by the next save). Loading uses torch.load(weights_only=True): a checkpoint is tensors and plain
values, never arbitrary pickled objects.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

log = logging.getLogger(__name__)
_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")


class CheckpointDir:
    def __init__(self, path: str | Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.path = Path(path)
        self.keep = keep
        self.path.mkdir(parents=True, exist_ok=True)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints present, oldest first."""
        return sorted(int(m.group(1)) for p in self.path.iterdir() if (m := _NAME.match(p.name)))

    def file(self, step: int) -> Path:
        return self.path / f"ckpt-{step:012d}.pt"

    def save(self, state: dict, step: int) -> Path:
        for stale in self.path.glob("*.tmp"):  # left by a writer killed mid-save
            stale.unlink(missing_ok=True)
        final = self.file(step)
        tmp = final.with_suffix(".pt.tmp")
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        for old in self.steps()[: -self.keep]:
            self.file(old).unlink(missing_ok=True)
        return final

    def load_latest(self) -> dict | None:
        """The newest checkpoint that loads; an unreadable one is reported and skipped."""
        for step in reversed(self.steps()):
            try:
                return torch.load(self.file(step), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - fall back to the previous checkpoint
                log.error("checkpoint %s is unreadable (%s); trying the one before", self.file(step), exc)
        return None


def load_file(path: str | Path) -> dict:
    """One checkpoint file (e.g. `unisar fit`'s output), tensors and plain values only."""
    return torch.load(path, map_location="cpu", weights_only=True)
