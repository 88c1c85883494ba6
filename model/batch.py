"""Batches: stream samples -> arrays of raw ids (`collate`); model.tensors.encode turns
them into a step's tensors.

`collate` is the one place that walks Python objects (one pass over each behaviour); all
that follows is vectorised numpy.

Layout of one task's rows (R = 30 rec slots, S = 30 search slots, K = 5 clicks):
  rec_items (B, R)        the last R rec items, oldest first, padding (0) after
  search_query (B, S)     index into Batch.queries (row 0 is the empty query = padding)
  search_clicks (B, S, K) clicked items of each search behaviour, padding after
  mixed (B, R + S)        the slot at each position of the mixed sequence: slot r < R is rec
                          slot r, slot R + s is search slot s. Real behaviours in time order
                          (rec first on equal timestamps), then rec padding, then search
                          padding: padding keeps its type, so the sequence splits back into
                          exactly R rec and S search positions.
  session (B, R + S)      the session of each mixed position: 0 = the current one (behaviours
                          within SESSION_GAP_MS of one another going back from the sample's
                          own time), 1 = the one before, ...; -1 for padding.
Rec exposures without a click (label 0) are left out unless `collate(exposures=True)`: then
each is a rec row of its own whose shown item, in column 0, is a labelled negative (`label`
0 where a click's is 1; the models' losses read it). A search with several clicks gives one
row per clicked item (up to K).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from stream.contract.history import Limits
from stream.contract.samples import Sample

_LAST = np.iinfo(np.int64).max  # timestamp of padding: sorts after every behaviour
SESSION_GAP_MS = 30 * 60_000  # more inactivity than this starts a new session (USER's 30 minutes)


@dataclass
class TaskRows:
    """One task's rows, raw ids (int64 numpy)."""

    user: np.ndarray  # (B,)
    rec_items: np.ndarray  # (B, R)
    search_query: np.ndarray  # (B, S) index into Batch.queries
    search_clicks: np.ndarray  # (B, S, K)
    mixed: np.ndarray  # (B, R + S)
    target: np.ndarray  # (B,) the true item
    query: np.ndarray  # (B,) index into Batch.queries: the search's own query (0 for rec)
    # A search is one row per click: `siblings` holds all its clicks (never its negatives),
    # `first` marks one row per sample (in-batch negatives must not be copies of the positive).
    siblings: np.ndarray | None = None  # (B, K) raw item ids, 0 = padding
    first: np.ndarray | None = None  # (B,) bool
    session: np.ndarray | None = None  # (B, R + S) session of each mixed position, -1 = padding
    label: np.ndarray | None = None  # (B,) float32: 1 a click, 0 a rec exposure; None: every row a click

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class Batch:
    """A step's samples: the rec rows, the search rows and the queries both refer to."""

    queries: np.ndarray  # (Q, W) word ids, padding 0; row 0 is the empty query
    tasks: dict[str, TaskRows] = field(default_factory=dict)
    skipped: int = 0  # rec exposures without a click, left out

    def __len__(self) -> int:
        return sum(len(t) for t in self.tasks.values())


def is_ranked(s: Sample) -> bool:
    """A sample the model ranks and learns from: a rec click, or a search with clicks (a rec
    exposure without a click is skipped)."""
    return (s.task == "rec" and s.label == 1) or (s.task == "search" and bool(s.items))


def _per_task(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """The ranked rec samples and search samples, each in their order in `samples`."""
    ranked_ = [s for s in samples if is_ranked(s)]
    return [s for s in ranked_ if s.task == "rec"], [s for s in ranked_ if s.task == "search"]


def ranked(samples: list[Sample], limits: Limits = Limits()) -> dict[str, list[tuple[Sample, int]]]:
    """The rows a batch of `samples` ranks, per task, in collate's order: (sample, true item)
    for each rec click, and for each click of a search (up to max_clicks)."""
    rec, search = _per_task(samples)
    rows = {"rec": [(s, s.items[0]) for s in rec],
            "search": [(s, item) for s in search for item in s.items[: limits.max_clicks]]}
    return {task: r for task, r in rows.items() if r}


def collate(samples: list[Sample], limits: Limits = Limits(), exposures: bool = False) -> Batch:
    """The batch of `samples`; with `exposures`, rec exposures come after the rec clicks as
    labelled negatives (rows with `label` 0)."""
    queries: dict[tuple[int, ...], int] = {(): 0}
    tasks = {}
    rec, search = _per_task(samples)
    shown = [s for s in samples if s.task == "rec" and not is_ranked(s) and s.items] if exposures else []
    if rec or shown:
        rows = _history_rows(rec + shown, queries, limits)
        n = len(rec) + len(shown)
        tasks["rec"] = TaskRows(
            **rows,
            target=np.fromiter((s.items[0] for s in chain(rec, shown)), np.int64, n),
            query=np.zeros(n, np.int64),
            siblings=np.zeros((n, 1), np.int64),
            first=np.ones(n, bool),
            label=np.repeat(np.array([1.0, 0.0], np.float32), [len(rec), len(shown)]) if shown else None,
        )
    if search:
        rows = _history_rows(search, queries, limits)
        n_clicks = np.fromiter((min(len(s.items), limits.max_clicks) for s in search), np.int64, len(search))
        own = np.fromiter((_query_index(queries, s.query, limits) for s in search), np.int64, len(search))
        siblings = np.zeros((len(search), limits.max_clicks), np.int64)
        siblings[ragged(n_clicks)] = np.fromiter(chain.from_iterable(s.items[: limits.max_clicks] for s in search),
                                                  np.int64)
        first = np.zeros(int(n_clicks.sum()), bool)
        first[np.cumsum(n_clicks) - n_clicks] = True
        tasks["search"] = TaskRows(
            **{k: np.repeat(v, n_clicks, axis=0) for k, v in rows.items()},
            target=np.fromiter(chain.from_iterable(s.items[: limits.max_clicks] for s in search), np.int64),
            query=np.repeat(own, n_clicks),
            siblings=np.repeat(siblings, n_clicks, axis=0),
            first=first,
        )
    skipped = sum(1 for s in samples if not is_ranked(s) and s.task == "rec") - len(shown)
    return Batch(_pad_queries(list(queries)), tasks, skipped)


def _query_index(queries: dict, words: tuple[int, ...], limits: Limits) -> int:
    return queries.setdefault(words[: limits.max_words], len(queries))


def ragged(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every element of ragged rows with these lengths."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return row, np.arange(len(row)) - start


def _history_rows(samples: list[Sample], queries: dict, limits: Limits) -> dict[str, np.ndarray]:
    R, S, K = limits.max_rec, limits.max_search, limits.max_clicks
    n = len(samples)
    recs = [s.history.rec[-R:] for s in samples]
    searches = [s.history.search[-S:] for s in samples]
    behaviours = list(chain.from_iterable(searches))

    rec_items, rec_ts = np.zeros((n, R), np.int64), np.full((n, R), _LAST)
    at = ragged(np.fromiter(map(len, recs), np.int64, n))
    rec_items[at] = np.fromiter((b.item for r in recs for b in r), np.int64)
    rec_ts[at] = np.fromiter((b.ts for r in recs for b in r), np.int64)

    search_query, search_ts = np.zeros((n, S), np.int64), np.full((n, S), _LAST)
    at = ragged(np.fromiter(map(len, searches), np.int64, n))
    search_query[at] = np.fromiter((_query_index(queries, b.query, limits) for b in behaviours), np.int64)
    search_ts[at] = np.fromiter((b.ts for b in behaviours), np.int64)

    search_clicks = np.zeros((n, S, K), np.int64)
    n_clicks = np.fromiter((min(len(b.clicks), K) for b in behaviours), np.int64, len(behaviours))
    slot, col = ragged(n_clicks)
    search_clicks[at[0][slot], at[1][slot], col] = np.fromiter(
        chain.from_iterable(b.clicks[:K] for b in behaviours), np.int64
    )
    # stable: rec before search on equal timestamps, rec padding before search padding
    mixed = np.argsort(np.concatenate([rec_ts, search_ts], axis=1), axis=1, kind="stable")
    times = np.take_along_axis(np.concatenate([rec_ts, search_ts], axis=1), mixed, 1)
    now = np.fromiter((s.ts for s in samples), np.int64, n)
    user = np.fromiter((s.user for s in samples), np.int64, n)
    return dict(user=user, rec_items=rec_items, search_query=search_query, search_clicks=search_clicks, mixed=mixed,
                session=sessions(times, now))


def sessions(times: np.ndarray, now: np.ndarray) -> np.ndarray:
    """(B, L) session of each time-ordered behaviour (padding `_LAST` last), counted back
    from `now` (B,): a gap over SESSION_GAP_MS after a behaviour (to the next one, or to now
    after the latest) puts it and all before it one session further back; -1 for padding."""
    real = times != _LAST
    after = np.concatenate([times[:, 1:], np.full((len(times), 1), _LAST)], axis=1)
    after = np.where(after != _LAST, after, now[:, None])
    gap = real & (after - np.where(real, times, 0) > SESSION_GAP_MS)
    back = np.cumsum(gap[:, ::-1], axis=1)[:, ::-1]  # gaps at or after each position
    return np.where(real, back, -1)


def _pad_queries(queries: list[tuple[int, ...]]) -> np.ndarray:
    lengths = np.fromiter(map(len, queries), np.int64, len(queries))
    out = np.zeros((len(queries), max(1, int(lengths.max()))), np.int64)
    out[ragged(lengths)] = np.fromiter(chain.from_iterable(queries), np.int64)
    return out
