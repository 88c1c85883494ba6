"""The paper's offline protocol over a list of samples: the true item against 99 sampled
items the user never interacted with (or every known item), HR@{1,5,10} and NDCG@{5,10}
per task. Shared by `unisar eval` and the continual trainer's periodic evaluation.

Honest by construction:
- the 99 negatives of a row are drawn from a pool of items that does not depend on the
  model (by default every item the evaluated samples mention), with a generator seeded by
  the evaluation seed and the row itself (user, time, true item): two checkpoints, or two
  models, are scored on identical candidates;
- an item the model has never seen (cold) is scored through its learned unknown-item
  vector, and the pool holds cold items as well as known ones, so a cold target is not the
  only cold candidate; the share of cold targets and the metrics on warm and cold targets
  are reported apart;
- rows with a NaN or infinite score count against the model and are counted.
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from model.batch import collate, is_ranked, ranked
from model.metrics import report

N_NEGATIVES = 99


def evaluable(samples: list) -> list:
    """Rows the protocol ranks: rec clicks and searches with clicks."""
    return [s for s in samples if is_ranked(s)]


def interacted(samples: list) -> dict[int, np.ndarray]:
    """Every item each user touched in `samples` (clicks, search clicks, exposures)."""
    items: dict[int, set] = {}
    for s in samples:
        items.setdefault(s.user, set()).update(s.items)
    return {u: np.fromiter(v, np.int64, len(v)) for u, v in items.items()}


def item_pool(samples: list) -> np.ndarray:
    """Every item `samples` mention (targets, history items, search clicks), sorted."""
    ids = set(chain.from_iterable(s.items for s in samples))
    for s in samples:
        ids.update(b.item for b in s.history.rec)
        ids.update(chain.from_iterable(b.clicks for b in s.history.search))
    ids.discard(0)
    return np.array(sorted(ids), np.int64)


def draw_negatives(sample, target: int, pool: np.ndarray, exclude: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` distinct items of `pool`, none the user touched (its history, this sample's items,
    `exclude`), from a generator keyed by the seed and the row alone."""
    touched = {target, *sample.items, *(b.item for b in sample.history.rec), *exclude.tolist(),
               *chain.from_iterable(b.clicks for b in sample.history.search)}
    rng = np.random.default_rng([seed, sample.user, sample.ts, target])
    out: list[int] = []
    chosen: set[int] = set()
    for _ in range(20):
        for item in pool[rng.integers(0, len(pool), 2 * n)].tolist():
            if item not in touched and item not in chosen:
                chosen.add(item)
                out.append(item)
                if len(out) == n:
                    return np.array(out, np.int64)
    raise ValueError(f"cannot draw {n} negatives from a pool of {len(pool)} items outside the "
                     f"{len(touched)} a user touched; evaluate on more items")


def negatives_for(samples: list, limits, pool: np.ndarray, seed: int, exclude: dict | None = None,
                  n: int = N_NEGATIVES) -> dict[str, np.ndarray]:
    """{task: (rows, n) raw item ids}: each ranked row's negatives (draw_negatives), in
    collate's row order. The same for every model given the same samples, pool and seed."""
    exclude, none = exclude or {}, np.zeros(0, np.int64)
    return {task: np.stack([draw_negatives(s, t, pool, exclude.get(s.user, none), n, seed) for s, t in pairs])
            for task, pairs in ranked(samples, limits).items()}


def evaluate_samples(learner, samples: list, *, exclude: dict | None = None, pool: np.ndarray | None = None,
                     full_ranking: bool = False, seed: int = 0, batch_size: int = 1024,
                     progress=None) -> dict[str, dict]:
    """{task: {"rows": n, "nonfinite": rows with a NaN or infinite score, "cold_share": share of
    true items the model has never seen, "HR@1": ..., "NDCG@10": ..., "warm": {...}, "cold":
    {...}}}; learns nothing. `pool`: the items negatives are drawn from (default: every item
    `samples` mention); `full_ranking` ranks against every item the model knows instead.
    `progress` wraps the iterable of batch starts (e.g. a tqdm bar)."""
    exclude = exclude or {}
    pool = item_pool(samples) if pool is None else pool
    scores: dict[str, list] = {}
    cold: dict[str, list] = {}
    known = learner.ids["items"]
    starts = range(0, len(samples), batch_size)
    for i in starts if progress is None else progress(starts):
        chunk = samples[i : i + batch_size]
        rows = ranked(chunk, learner.limits)
        negatives = None if full_ranking else negatives_for(chunk, learner.limits, pool, seed, exclude)
        out = learner.score(collate(chunk, learner.limits), n_negatives=None if full_ranking else N_NEGATIVES,
                            exclude=exclude, seed=seed, negatives=negatives)
        for task, s in out.items():
            scores.setdefault(task, []).append(s.numpy())
            targets = np.fromiter((t for _, t in rows[task]), np.int64, len(rows[task]))
            cold.setdefault(task, []).append(known.find(targets) == 0)
    return {task: report(np.concatenate(parts), np.concatenate(cold[task])) for task, parts in scores.items()}
