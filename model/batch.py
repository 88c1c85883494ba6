"""Batches: stream samples -> arrays of raw ids (`collate`) -> model tensors (`encode`).

`collate` is the one place that walks Python objects (one pass over each behaviour); all
that follows is vectorised numpy. `encode` maps raw 64-bit ids to embedding-table rows
(inserting unseen ids when training), samples negatives and builds one local item
vocabulary per step, so every distinct item is projected once however often it occurs.

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
import torch

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
        siblings[_ragged(n_clicks)] = np.fromiter(chain.from_iterable(s.items[: limits.max_clicks] for s in search),
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


def _ragged(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    at = _ragged(np.fromiter(map(len, recs), np.int64, n))
    rec_items[at] = np.fromiter((b.item for r in recs for b in r), np.int64)
    rec_ts[at] = np.fromiter((b.ts for r in recs for b in r), np.int64)

    search_query, search_ts = np.zeros((n, S), np.int64), np.full((n, S), _LAST)
    at = _ragged(np.fromiter(map(len, searches), np.int64, n))
    search_query[at] = np.fromiter((_query_index(queries, b.query, limits) for b in behaviours), np.int64)
    search_ts[at] = np.fromiter((b.ts for b in behaviours), np.int64)

    search_clicks = np.zeros((n, S, K), np.int64)
    n_clicks = np.fromiter((min(len(b.clicks), K) for b in behaviours), np.int64, len(behaviours))
    slot, col = _ragged(n_clicks)
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
    out[_ragged(lengths)] = np.fromiter(chain.from_iterable(queries), np.int64)
    return out


# ---------------------------------------------------------------- model tensors


@dataclass
class TaskTensors:
    """One task's rows as the model reads them; item indices are local to the step."""

    user: torch.Tensor  # (B,) user table rows
    rec_items: torch.Tensor  # (B, R) local item index, 0 = padding
    search_query: torch.Tensor  # (B, S) query index, 0 = padding
    search_clicks: torch.Tensor  # (B, S, K) local item index, 0 = padding
    mixed: torch.Tensor  # (B, L) slot at each mixed position (L = R + S)
    unmixed: torch.Tensor  # (B, L) mixed position of each slot (the inverse permutation)
    candidates: torch.Tensor  # (B, C) local item index; column 0 is the true item
    query: torch.Tensor  # (B,) query index of the search's own query (0 for rec)
    blocked: torch.Tensor | None = None  # (B, C) full ranking: candidates the user already touched
    first: torch.Tensor | None = None  # (B,) bool: one row per sample (a search repeats per click)
    session: torch.Tensor | None = None  # (B, L) session of each mixed position (0 current), -1 padding
    label: torch.Tensor | None = None  # (B,) 1 a click, 0 a rec exposure (a labelled negative); None: all clicks
    profile: torch.Tensor | None = None  # (B, F) the user's profile tokens, local word indices, 0 = none


@dataclass
class StepTensors:
    """Everything one forward pass needs."""

    item_rows: torch.Tensor  # (U,) item table rows of the step's local item vocabulary; [0] = 0
    word_rows: torch.Tensor  # (V,) word table rows of the step's local word vocabulary; [0] = 0
    query_words: torch.Tensor  # (n_words,) local word index of every query's words, query after query
    query_offsets: torch.Tensor  # (Q,) where each query starts in query_words; query 0 is empty
    tasks: dict[str, TaskTensors]
    rel_items: torch.Tensor  # (N,) local item index: L_Rel's shared negative items
    rel_queries: torch.Tensor  # (N,) query index: L_Rel's shared negative queries
    # item features from the catalogue (None without one): local word indices, 0 = none
    item_categories: torch.Tensor | None = None  # (U, levels) category tokens by level
    item_caption: torch.Tensor | None = None  # (U, words) caption words

    def to(self, device: torch.device | str) -> StepTensors:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        tasks = {k: TaskTensors(*(move(getattr(t, f)) for f in t.__dataclass_fields__)) for k, t in self.tasks.items()}
        return StepTensors(
            move(self.item_rows), move(self.word_rows), move(self.query_words), move(self.query_offsets),
            tasks, move(self.rel_items), move(self.rel_queries), move(self.item_categories), move(self.item_caption),
        )


def sample_negatives(
    rng: np.random.Generator, n_pool: int, exclude: np.ndarray, n: int, strict: bool = False
) -> np.ndarray:
    """`n` distinct rows per batch row, uniform over rows 1..n_pool, none in that row's
    `exclude` (B, E) rows. Rejection sampling, vectorised over the batch.

    With `strict`, raises if the pool cannot supply them; otherwise a row of a pool too
    small keeps the collisions left after a bounded number of redraws.
    """
    B = len(exclude)
    if n_pool < 1:
        raise ValueError("no items to sample negatives from: the model has not seen any item yet")
    out = rng.integers(1, n_pool + 1, size=(B, n))
    for _ in range(64):
        bad = (out[:, :, None] == exclude[:, None, :]).any(-1)
        order = np.argsort(out, axis=1, kind="stable")
        sorted_ = np.take_along_axis(out, order, 1)
        dup = np.zeros_like(bad)
        np.put_along_axis(dup, order[:, 1:], sorted_[:, 1:] == sorted_[:, :-1], 1)
        bad |= dup
        if not bad.any():
            return out
        out[bad] = rng.integers(1, n_pool + 1, size=int(bad.sum()))
    if strict:
        raise ValueError(
            f"cannot sample {n} distinct negatives per row from {n_pool} known items "
            f"outside each user's {exclude.shape[1]} interacted items; evaluate on more items"
        )
    return out


_NONE = np.zeros(0, np.int64)
UNKNOWN = -1  # an item row for an id the model does not hold: embeds to a learned vector, not to padding


def encode(
    batch: Batch,
    tables: dict,
    rng: np.random.Generator,
    *,
    train: bool,
    n_negatives: int | None,
    n_rel_items: int = 0,
    rel_queries: np.ndarray | None = None,
    exclude: dict[int, np.ndarray] | None = None,
    negatives: dict[str, np.ndarray] | None = None,
    unknown_rate: float = 0.0,
    catalogue=None,
    profiles=None,
) -> tuple[StepTensors, dict[str, np.ndarray]]:
    """Map a batch's raw ids to table rows and sample its negatives.

    `tables` holds an IdTable per kind ("users", "items", "words"). Training inserts
    unseen ids (and returns the rows each table recycled, to be re-initialised); scoring
    only finds them: an item the table does not hold gets row UNKNOWN (a learned vector,
    never the padding vector), an unknown user or word row 0. Negatives are uniform over
    the item table's rows, never an item of the user's history or the target, nor one in
    `exclude[user]`; `negatives[task]` (B, n) raw item ids gives them instead (an evaluation
    draws them itself, so that they depend on its seed, not on the model);
    `n_negatives=None` takes every known item instead (full ranking), marking those the user
    touched in `blocked`. In training, each candidate (target or negative) is shown as an
    unknown item with probability `unknown_rate`, so the unknown-item vector learns what an
    item the model knows nothing about is worth. `rel_queries` (N, W) are L_Rel's shared
    negative queries (raw words). With a `catalogue` (model.catalogue), every item of the
    step, known or not, carries its category and caption tokens, mapped through the word
    table like query words; an item shown as unknown keeps its features (only its id is hidden).
    With `profiles` (model.catalogue, by user id), each row carries its user's profile tokens
    (`TaskTensors.profile`) through the same word vocabulary; a user without one, zeros.
    """
    def look(kind: str, ids: np.ndarray) -> np.ndarray:
        if not train:
            rows = tables[kind].find(ids)
            return np.where((rows == 0) & (ids != 0), UNKNOWN, rows) if kind == "items" else rows
        rows, recycled[kind] = tables[kind].lookup(ids)
        return rows

    recycled: dict[str, np.ndarray] = {k: _NONE for k in tables}
    tasks = list(batch.tasks.values())
    user_rows = np.split(look("users", np.concatenate([t.user for t in tasks])), np.cumsum([len(t) for t in tasks])[:-1])

    # one local item vocabulary for the step: index 0 is padding, then each distinct item once
    parts = [a for t in tasks for a in (t.rec_items, t.search_clicks, t.target, t.siblings)]
    flat = np.concatenate([a.ravel() for a in parts])
    real = flat != 0
    distinct, inverse = np.unique(flat[real], return_inverse=True)
    local = np.zeros(len(flat), np.int64)
    local[real] = inverse + 1
    item_rows = [np.zeros(1, np.int64), look("items", distinct)]
    item_raw = [np.zeros(1, np.int64), distinct]  # the raw id of every local item, beside item_rows
    row_key = tables["items"].row_key  # the raw id held by each item table row
    local_parts = [p.reshape(a.shape) for p, a in zip(np.split(local, np.cumsum([a.size for a in parts])[:-1]), parts)]
    vocab = np.concatenate(item_rows)
    n_pool, n_local = tables["items"].n_used, len(vocab)

    out = {}
    for i, (name, rows) in enumerate(batch.tasks.items()):
        rec_items, clicks, target, siblings = local_parts[4 * i : 4 * i + 4]
        seen = vocab[np.concatenate([rec_items, clicks.reshape(len(rows), -1), target[:, None], siblings], axis=1)]
        seen = np.maximum(seen, 0)  # an unknown item is no row to keep out
        if exclude:
            seen = np.concatenate([seen, _padded_rows(tables["items"], [exclude.get(u, _NONE) for u in rows.user])], 1)
        blocked = None
        if n_negatives is None:  # every known item, one shared block of the vocabulary
            touched = np.zeros((len(rows), n_pool + 1), bool)
            touched[np.arange(len(rows))[:, None], seen] = True
            blocked = torch.from_numpy(np.concatenate([np.zeros((len(rows), 1), bool), touched[:, 1:]], 1))
            item_rows.append(np.arange(1, n_pool + 1))
            item_raw.append(row_key[1 : n_pool + 1])
            candidates = np.concatenate([target[:, None], np.broadcast_to(n_local + np.arange(n_pool), (len(rows), n_pool))], 1)
            n_local += n_pool
        else:
            if negatives is not None and name in negatives:
                drawn = look("items", negatives[name])
                item_raw.append(np.asarray(negatives[name], np.int64).ravel())
            else:
                drawn = sample_negatives(rng, n_pool, seen, n_negatives, strict=not train)
                item_raw.append(row_key[drawn.ravel()])
            item_rows.append(drawn.ravel())
            candidates = np.concatenate([target[:, None], n_local + np.arange(drawn.size).reshape(drawn.shape)], 1)
            n_local += drawn.size
            if train and unknown_rate > 0:  # id dropout: a fresh UNKNOWN entry per candidate shown
                hidden = rng.random(candidates.shape) < unknown_rate
                n_hidden = int(hidden.sum())
                item_rows.append(np.full(n_hidden, UNKNOWN))
                item_raw.append(np.concatenate(item_raw)[candidates[hidden]])
                candidates[hidden] = n_local + np.arange(n_hidden)
                n_local += n_hidden
        out[name] = TaskTensors(
            user=torch.from_numpy(user_rows[i]),
            rec_items=torch.from_numpy(rec_items),
            search_query=torch.from_numpy(rows.search_query),
            search_clicks=torch.from_numpy(clicks),
            mixed=torch.from_numpy(rows.mixed),
            unmixed=torch.from_numpy(np.argsort(rows.mixed, axis=1)),
            candidates=torch.from_numpy(np.ascontiguousarray(candidates)),
            query=torch.from_numpy(rows.query),
            blocked=blocked,
            first=torch.from_numpy(rows.first),
            session=None if rows.session is None else torch.from_numpy(rows.session),
            label=None if rows.label is None else torch.from_numpy(rows.label),
        )

    rel_items = n_local + np.arange(n_rel_items if n_pool else 0)
    if len(rel_items):
        item_rows.append(rng.integers(1, n_pool + 1, size=len(rel_items)))
        item_raw.append(row_key[item_rows[-1]])
    queries = batch.queries
    rel_query_index = np.zeros(0, np.int64)
    if rel_queries is not None and len(rel_queries):
        # one index per distinct query, so L_Rel can tell a negative equal to a pair's own query
        width = max(queries.shape[1], rel_queries.shape[1])
        pad = lambda q: np.pad(q, ((0, 0), (0, width - q.shape[1])))  # noqa: E731
        both = np.concatenate([pad(queries), pad(rel_queries)])
        keys = np.ascontiguousarray(both).view(np.dtype((np.void, 8 * width))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        index_of = np.full(len(both), -1, np.int64)
        index_of[: len(queries)] = np.arange(len(queries))  # batch queries keep their indices
        new = [i for i in np.sort(first) if i >= len(queries)]  # rel queries not in the batch
        index_of[new] = len(queries) + np.arange(len(new))
        canonical = index_of[first[inverse]]  # each row -> the index of its first equal row
        rel_query_index = canonical[len(queries) :]
        queries = np.concatenate([both[: len(queries)], both[new]])
    # queries as bags of local word indices (no padding), over a vocabulary of distinct words
    # that item feature tokens share
    real = queries != 0
    blocks = {}  # feature token blocks (raw tokens, 0 = none) that share the query words' vocabulary
    if catalogue is not None:
        blocks["item_categories"], blocks["item_caption"] = catalogue.lookup(np.concatenate(item_raw))
    if profiles is not None:
        blocks.update({("profile", task): profiles.lookup(rows.user)[0] for task, rows in batch.tasks.items()})
    tokens = [queries[real], *(block[block != 0] for block in blocks.values())]
    distinct, inverse = np.unique(np.concatenate(tokens), return_inverse=True)
    word_rows = np.concatenate([np.zeros(1, np.int64), look("words", distinct)])
    local_words = np.split(inverse.astype(np.int64) + 1, np.cumsum([len(t) for t in tokens])[:-1])
    query_offsets = np.concatenate([[0], np.cumsum(real.sum(1))[:-1]])
    local = {key: torch.from_numpy(_localised(block, words))
             for (key, block), words in zip(blocks.items(), local_words[1:])}
    for task in batch.tasks:
        out[task].profile = local.pop(("profile", task), None)

    step = StepTensors(
        item_rows=torch.from_numpy(np.concatenate(item_rows)),
        word_rows=torch.from_numpy(word_rows),
        query_words=torch.from_numpy(local_words[0]),
        query_offsets=torch.from_numpy(query_offsets),
        tasks=out,
        rel_items=torch.from_numpy(rel_items),
        rel_queries=torch.from_numpy(rel_query_index),
        **local,  # the item features (the profiles went to their tasks)
    )
    return step, recycled


def _localised(block: np.ndarray, words: np.ndarray) -> np.ndarray:
    """`block` of raw tokens with its non-zero entries replaced by `words`, their local indices
    in the step's word vocabulary (0 stays 0)."""
    out = np.zeros(block.shape, np.int64)
    out[block != 0] = words
    return out


def _padded_rows(table, groups: list[np.ndarray]) -> np.ndarray:
    """Rows of ragged groups of ids, padded with 0 into one (len(groups), E) array."""
    lengths = np.fromiter(map(len, groups), np.int64, len(groups))
    out = np.zeros((len(groups), max(1, int(lengths.max()))), np.int64)
    out[_ragged(lengths)] = table.find(np.concatenate(groups)) if lengths.sum() else _NONE
    return out
