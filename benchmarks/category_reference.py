"""A headroom reference for the quality benchmark: a scorer handed what UniSAR has to learn.

It knows every item's category (level 1 of the simulator's item catalogue) and scores a candidate by
P(category | the sample's own history) x P(item | category), both counted on the training
samples; for a search it also weighs the category by the query's words (naive Bayes over
word-category counts from training searches). Nothing is tuned: the smoothing constants
are fixed below. Its figures say how far above popularity a model could get on this data;
it is not a competitor (UniSAR sees ids only, never categories).

Protocol as `unisar eval`: the held-out latest 10% of each user's samples, each rec click
and each search click one row, the true item among 99 items sampled uniformly from the
items seen in training that the user never touched; ties count against the scorer. The
negatives are drawn with their own generator, so they are not the same draws as eval's.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from model.tensors import sample_negatives
from model.evaluation import evaluable, interacted
from model.metrics import evaluate
from stream.contract.events import Rejection
from stream.contract.files import read_items
from stream.contract.offline import load_samples, split_heldout
from stream.contract.history import Limits
from stream.contract.items import ItemRecord

USER_PRIOR = 2.0  # pseudo-behaviours of the global category mix added to a user's history
ITEM_PRIOR = 0.1  # pseudo-clicks per item within its category
WORD_PRIOR = 0.01  # pseudo-counts per (word, category)


def read_categories(path) -> dict[int, int]:
    """item id -> its level-1 category token, from an item catalogue (items without one left out)."""
    category = {}
    for line, record in read_items(path):
        if isinstance(record, Rejection):
            raise SystemExit(f"{path}:{line}: {record.reason}")
        if not isinstance(record, ItemRecord):  # a user profile
            continue
        if record.categories and record.categories[0]:
            category[record.item] = record.categories[0]
        else:
            category.pop(record.item, None)
    return category


def history_categories(sample, category: dict[int, int]) -> Counter:
    cats = Counter(category[b.item] for b in sample.history.rec if b.item in category)
    for b in sample.history.search:
        cats.update(category[i] for i in b.clicks if i in category)
    return cats


def evaluate_reference(events, categories, heldout: float = 0.1, seed: int = 0) -> dict[str, dict[str, float]]:
    """{task: {"rows": n, "HR@1": ..., "NDCG@10": ...}} on the held-out samples of `events` (the rule of
    `unisar fit`'s default: the latest `heldout` of all samples in event time)."""
    category = read_categories(categories)
    samples, _ = load_samples(str(events))
    train, test = split_heldout(samples, heldout)
    exclude = interacted(samples)
    known = np.fromiter(sorted({i for s in train for i in s.items}), np.int64)

    clicks = Counter(i for s in train if s.label == 1 or s.task == "search" for i in s.items)
    cat_clicks, cat_items = Counter(), Counter(category.get(i) for i in known.tolist())
    for i, n in clicks.items():
        cat_clicks[category.get(i)] += n
    total_clicks = sum(cat_clicks.values())
    word_cat: dict[int, Counter] = defaultdict(Counter)
    cat_words = Counter()
    for s in train:
        if s.task == "search":
            for i in s.items:
                for w in s.query:
                    word_cat[w][category.get(i)] += 1
                    cat_words[category.get(i)] += 1
    vocabulary = max(1, len(word_cat))
    n_categories = max(1, len(cat_items))

    def log_p_item(i: int, user_cats: Counter, n_user: int, query: tuple[int, ...]) -> float:
        c = category.get(i)
        p_cat = (user_cats[c] + USER_PRIOR * (cat_clicks[c] + 1) / (total_clicks + n_categories)) / (n_user + USER_PRIOR)
        p_in_cat = (clicks[i] + ITEM_PRIOR) / (cat_clicks[c] + ITEM_PRIOR * (cat_items[c] + 1))  # +1: an unseen target
        score = math.log(p_cat) + math.log(p_in_cat)
        for w in query:
            score += math.log((word_cat[w][c] + WORD_PRIOR) / (cat_words[c] + WORD_PRIOR * vocabulary))
        return score

    # negatives as the learner draws them: pool rows 1..len(known) stand for known[row - 1]
    row_of = {item: row for row, item in enumerate(known.tolist(), start=1)}
    rng = np.random.default_rng(seed)
    scores: dict[str, list[list[float]]] = {"rec": [], "search": []}
    for s in evaluable(test):
        user_cats = history_categories(s, category)
        n_user = sum(user_cats.values())
        query = s.query if s.task == "search" else ()
        touched = [row_of[i] for i in exclude[s.user].tolist() if i in row_of] or [0]  # row 0 is never drawn
        targets = s.items[: Limits().max_clicks]
        drawn = sample_negatives(rng, len(known), np.array([touched] * len(targets)), 99, strict=True)
        for target, negatives in zip(targets, known[drawn - 1].tolist()):
            scores[s.task].append([log_p_item(i, user_cats, n_user, query) for i in (target, *negatives)])
    return {task: {"rows": len(rows), **evaluate(np.array(rows))} for task, rows in scores.items() if rows}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", required=True, help="simulator JSONL")
    parser.add_argument("--categories", required=True, help="its item catalogue (X.items.jsonl)")
    args = parser.parse_args()
    print(json.dumps(evaluate_reference(args.events, args.categories), indent=2))
