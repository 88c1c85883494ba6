"""Prequential (test-then-train) quality over a sliding window: each batch is scored before
the learner sees it, and the window reports the paper's metrics over its last `size` rows
(with the non-finite rows, the share of cold targets, and warm and cold targets apart:
model.metrics.report). Pure bookkeeping; the scores come from Learner.score."""
from __future__ import annotations

import hashlib
from collections import deque

import numpy as np

from model.metrics import report


def scored(event_id: str, share: float) -> bool:
    """Whether test-then-train scores this sample, for a `share` of samples in (0, 1]. Decided
    by the event id alone (a stable hash), so the choice is the same whatever the batch, the
    model or the process: two models on one stream score the same samples. With share s and
    a window of W rows the window's HR@10 has a standard error of at most 0.5 / sqrt(W)
    (0.007 at the default 5,000) once full; s only sets how many samples it takes to fill."""
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < share * 2**64


class SlidingWindow:
    def __init__(self, size: int = 5_000) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self.size = size
        self._batches: dict[str, deque[tuple[np.ndarray, np.ndarray]]] = {}
        self._rows: dict[str, int] = {}

    def add(self, task: str, scores, cold=None) -> None:
        """Add one batch of a task's score matrix (rows: true item in column 0); `cold` marks
        the rows whose true item the model had never seen."""
        if len(scores) == 0:
            return
        scores = np.asarray(scores, np.float64)
        cold = np.zeros(len(scores), bool) if cold is None else np.asarray(cold, bool)
        batches = self._batches.setdefault(task, deque())
        batches.append((scores, cold))
        self._rows[task] = self._rows.get(task, 0) + len(scores)
        # drop whole old batches while the rest still fills the window
        while len(batches) > 1 and self._rows[task] - len(batches[0][0]) >= self.size:
            self._rows[task] -= len(batches.popleft()[0])

    def result(self) -> dict[str, dict]:
        """{task: model.metrics.report(...)} over the window's rows (batches may have
        different numbers of candidates: each is reported, then weighted by rows)."""
        out = {}
        for task, batches in self._batches.items():
            widths = {m.shape[1] for m, _ in batches}
            if len(widths) == 1:
                out[task] = report(np.concatenate([m for m, _ in batches]), np.concatenate([c for _, c in batches]))
            else:
                out[task] = _weighted([report(m, c) for m, c in batches])
        return out


def _weighted(reports: list[dict]) -> dict:
    rows = sum(r["rows"] for r in reports)
    out = {"rows": rows, "nonfinite": sum(r["nonfinite"] for r in reports),
           "cold_share": sum(r["cold_share"] * r["rows"] for r in reports) / rows}
    names = [k for k, v in reports[0].items() if isinstance(v, float) and k != "cold_share"]
    out.update({k: sum(r[k] * r["rows"] for r in reports) / rows for k in names})
    for part in ("warm", "cold"):
        have = [r[part] for r in reports if r[part]["rows"]]
        n = sum(p["rows"] for p in have)
        out[part] = {"rows": n, **({k: sum(p[k] * p["rows"] for p in have) / n for k in names} if n else {})}
    return out
