"""Prequential (test-then-train) quality over a sliding window: each batch is scored before
the learner sees it, and the window reports the paper's metrics over its last `size` rows.
Pure bookkeeping; the scores come from Learner.score."""
from __future__ import annotations

from collections import deque

from model.metrics import evaluate, nonfinite_rows


class SlidingWindow:
    def __init__(self, size: int = 5_000) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self.size = size
        self._batches: dict[str, deque[tuple[int, dict[str, float]]]] = {}
        self._rows: dict[str, int] = {}

    def add(self, task: str, scores) -> None:
        """Add one batch of a task's score matrix (rows: true item in column 0)."""
        if len(scores) == 0:
            return
        batches = self._batches.setdefault(task, deque())
        batches.append((len(scores), {**evaluate(scores), "nonfinite": nonfinite_rows(scores) / len(scores)}))
        self._rows[task] = self._rows.get(task, 0) + len(scores)
        # drop whole old batches while the rest still fills the window
        while len(batches) > 1 and self._rows[task] - batches[0][0] >= self.size:
            self._rows[task] -= batches.popleft()[0]

    def result(self) -> dict[str, dict[str, float]]:
        """{task: {"HR@1": ..., "NDCG@10": ..., "rows": n, "nonfinite": rows with a NaN or
        infinite score}}, row-weighted over the window."""
        out = {}
        for task, batches in self._batches.items():
            rows = sum(n for n, _ in batches)
            names = batches[0][1].keys()
            out[task] = {name: sum(n * m[name] for n, m in batches) / rows for name in names}
            out[task]["rows"] = rows
            out[task]["nonfinite"] = round(out[task]["nonfinite"] * rows)
        return out
