"""The paper's offline protocol over a list of samples: the true item against 99 sampled
items the user never interacted with (or every known item), HR@{1,5,10} and NDCG@{5,10}
per task. Shared by `unisar eval` and the continual trainer's periodic evaluation."""
from __future__ import annotations

import numpy as np

from model.batch import collate
from model.metrics import evaluate, nonfinite_rows


def evaluable(samples: list) -> list:
    """Rows the protocol ranks: rec clicks and searches with clicks."""
    return [s for s in samples if (s.task == "rec" and s.label == 1) or (s.task == "search" and s.items)]


def interacted(samples: list) -> dict[int, np.ndarray]:
    """Every item each user touched in `samples` (clicks, search clicks, exposures)."""
    items: dict[int, set] = {}
    for s in samples:
        items.setdefault(s.user, set()).update(s.items)
    return {u: np.fromiter(v, np.int64, len(v)) for u, v in items.items()}


def evaluate_samples(learner, samples: list, *, exclude: dict | None = None, full_ranking: bool = False,
                     seed: int = 0, batch_size: int = 1024) -> dict[str, dict[str, float]]:
    """{task: {"rows": n, "nonfinite": rows with a NaN or infinite score, "HR@1": ...,
    "NDCG@10": ...}}; learns nothing."""
    scores: dict[str, list] = {}
    for i in range(0, len(samples), batch_size):
        batch = collate(samples[i : i + batch_size], learner.limits)
        out = learner.score(batch, n_negatives=None if full_ranking else 99, exclude=exclude, seed=seed)
        for task, s in out.items():
            scores.setdefault(task, []).append(s.numpy())
    out = {}
    for task, parts in scores.items():
        matrix = np.concatenate(parts)
        out[task] = {"rows": len(matrix), "nonfinite": nonfinite_rows(matrix), **evaluate(matrix)}
    return out
