"""Model tensors: a collated batch (model.batch) -> one step's tensors (`encode`).

`encode` maps raw 64-bit ids to embedding-table rows (inserting unseen ids when training),
samples negatives and builds one local item vocabulary per step, so every distinct item is
projected once however often it occurs. Item indices in the tensors are local to the step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.batch import Batch, ragged


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
    out[ragged(lengths)] = table.find(np.concatenate(groups)) if lengths.sum() else _NONE
    return out
