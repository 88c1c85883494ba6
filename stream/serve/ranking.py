"""Ranking requests as one model batch: the pure core of the service.

A request (user, history, optional query, candidates) becomes one sample the learner
scores: a rec sample without a query, a search sample with one. The first candidate is the
sample's target, the others its given negatives (`Learner.score(negatives=...)`), so the
model ranks exactly the candidates asked for, through the same batch code as training and
evaluation. Requests of one task with fewer candidates than the longest are padded with
their own first candidate and the padding is cut off again. An item the model does not hold
scores through its learned unknown-item vector; a non-finite score ranks last.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from model.learner import Learner
from model.precision import autocast
from stream.contract.history import History
from stream.contract.samples import Sample


@dataclass(frozen=True, slots=True)
class RankRequest:
    user: int  # stable id
    history: History
    query: tuple[int, ...]  # stable word ids; (): no query, the rec task
    candidates: np.ndarray  # (C,) stable item ids, C >= 1

    @property
    def task(self) -> str:
        return "search" if self.query else "rec"


def _sample(r: RankRequest) -> Sample:
    return Sample("", r.user, 0, r.task, (int(r.candidates[0]),), 1, r.query, r.history)


def score_requests(learner: Learner, requests: list[RankRequest], bf16: bool = False) -> list[np.ndarray]:
    """Every request's candidate scores (float32, request order), from one forward pass."""
    by_task: dict[str, list[int]] = {"rec": [], "search": []}
    for i, r in enumerate(requests):
        by_task[r.task].append(i)
    samples, negatives = [], {}
    for task, idx in by_task.items():  # collate keeps rec rows first, then search rows
        if not idx:
            continue
        width = max(len(requests[i].candidates) for i in idx)
        neg = np.empty((len(idx), width - 1), np.int64)
        for row, i in enumerate(idx):
            c = requests[i].candidates
            neg[row, : len(c) - 1] = c[1:]
            neg[row, len(c) - 1 :] = c[0]  # padding, cut off below
        negatives[task] = neg
        samples += [_sample(requests[i]) for i in idx]
    with torch.inference_mode(), autocast(bf16, learner.device):
        scores = learner.score(samples, negatives=negatives)
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(requests)
    for task, idx in by_task.items():
        if idx:
            table = scores[task].numpy()
            for row, i in enumerate(idx):
                s = table[row, : len(requests[i].candidates)].astype(np.float32)
                out[i] = np.where(np.isfinite(s), s, -np.inf)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first; ties keep the candidates' order."""
    return np.argsort(-scores, kind="stable")[:k]


# ------------------------------------------------------------- precision


def inference_threads(setting: int = 0) -> int:
    """Torch threads for the forward pass: `setting`, or (0) one less than the CPUs. The event
    loop parses and answers requests while a batch runs; a forward pass on every core would
    leave it none, and oversubscribed OpenMP threads spin waiting for each other."""
    return setting or max(1, (os.cpu_count() or 1) - 1)
