"""Ranking metrics of the paper's protocol: HR@{1,5,10}, NDCG@{5,10}. Pure functions.

A row of `scores` holds the true item in column 0 and its candidates after it (99 sampled
items, or every item in full ranking; -inf marks a candidate that does not count).
Ties never help the model: the true item takes a uniformly random place among the items
scored equal to it, computed exactly as an expectation. A model that scores everything
equal thus gets HR@1 = 1/100 with 100 candidates, HR@10 = 10/100 (the reference's argsort
would put the true item first and report HR@1 = 1).
"""
from __future__ import annotations

import numpy as np

HR_AT = (1, 5, 10)
NDCG_AT = (5, 10)
# The one list of reported metrics, in report order: every table, plot and metric uses it.
NAMES = tuple(f"HR@{k}" for k in HR_AT) + tuple(f"NDCG@{k}" for k in NDCG_AT)


def _matrix(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"scores: expected (rows, 1 + candidates), got shape {s.shape}")
    return s


def _counts(scores) -> tuple[np.ndarray, np.ndarray]:
    """Per row: candidates that rank above the true item, and those tied with it.

    A non-finite score never helps the model: a true item scored NaN or +-inf ranks below
    every candidate that counts, and a candidate scored NaN or +inf ranks above the true
    item. -inf on a candidate is the marker of one that does not count (full ranking)."""
    s = _matrix(scores)
    true, cand = s[:, :1], s[:, 1:]
    counted = cand != -np.inf
    broken = np.isnan(cand) | (cand == np.inf)
    above = (((cand > true) | broken) & counted).sum(1)
    tied = ((cand == true) & counted & ~broken).sum(1)
    lost = ~np.isfinite(true[:, 0])
    return np.where(lost, counted.sum(1), above), np.where(lost, 0, tied)


def nonfinite_rows(scores) -> int:
    """Rows with a NaN or infinite score (a -inf candidate marker aside): a model bug to report."""
    s = _matrix(scores)
    return int((~np.isfinite(s[:, 0]) | (np.isnan(s[:, 1:]) | (s[:, 1:] == np.inf)).any(1)).sum())


def hit_rate(scores, k: int) -> float:
    """Mean probability that the true item ranks in the top k."""
    above, tied = _counts(scores)
    return float(np.clip((k - above) / (tied + 1), 0.0, 1.0).mean())


def ndcg(scores, k: int) -> float:
    """Mean NDCG@k with one relevant item: 1 / log2(rank + 1) if rank <= k, averaged over
    the equally likely ranks above+1 .. above+tied+1."""
    above, tied = _counts(scores)
    gain = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1))])  # gain[r] = sum of ranks 1..r
    first, last = np.minimum(above, k), np.minimum(above + tied + 1, k)
    return float(((gain[last] - gain[first]) / (tied + 1)).mean())


def evaluate(scores) -> dict[str, float]:
    """The paper's metrics for one task's score matrix (count its broken rows apart with
    `nonfinite_rows`)."""
    out = {f"HR@{k}": hit_rate(scores, k) for k in HR_AT}
    out.update({f"NDCG@{k}": ndcg(scores, k) for k in NDCG_AT})
    return out


def report(scores, cold=None) -> dict:
    """Everything reported for one task's rows: {"rows", "nonfinite", "cold_share", the
    metrics, "warm": {"rows", metrics}, "cold": {"rows", metrics}}. `cold` (rows,) marks the
    true items the model had never seen (none if not given)."""
    s = _matrix(scores)
    cold = np.zeros(len(s), bool) if cold is None else np.asarray(cold, bool)
    out = {"rows": len(s), "nonfinite": nonfinite_rows(s), "cold_share": float(cold.mean()), **evaluate(s)}
    for name, part in (("warm", s[~cold]), ("cold", s[cold])):
        out[name] = {"rows": len(part), **(evaluate(part) if len(part) else {})}
    return out
