import numpy as np
import pytest

from model.metrics import evaluate, hit_rate, ndcg, nonfinite_rows


def test_a_constant_scorer_gets_chance_not_a_free_win():
    m = evaluate(np.zeros((7, 100)))
    assert m["HR@1"] == pytest.approx(0.01) and m["HR@10"] == pytest.approx(0.10)
    assert m["NDCG@5"] == pytest.approx(sum(1 / np.log2(r + 1) for r in range(1, 6)) / 100)
    assert m["NDCG@10"] == pytest.approx(sum(1 / np.log2(r + 1) for r in range(1, 11)) / 100)


def test_ranks_from_strict_and_tied_scores():
    scores = np.array([
        [5.0, 1, 2, 3],  # rank 1
        [2.0, 3, 1, 1],  # rank 2
        [1.0, 1, 0, 0],  # tied with one: rank 1 or 2
        [0.0, -np.inf, 1, 2],  # -inf never counts: rank 3
    ])
    assert hit_rate(scores[:2], 1) == 0.5
    assert hit_rate(scores[2:3], 1) == 0.5
    assert ndcg(scores[1:2], 5) == pytest.approx(1 / np.log2(3))
    assert hit_rate(scores[3:], 2) == 0.0 and hit_rate(scores[3:], 3) == 1.0


def test_a_nonfinite_true_score_ranks_last_and_is_counted():
    for bad in (np.nan, np.inf, -np.inf):
        scores = np.array([[bad, 0.1, 0.2, 0.3], [0.9, 0.1, 0.2, 0.3]])
        assert hit_rate(scores[:1], 1) == 0.0 and hit_rate(scores[:1], 3) == 0.0 and ndcg(scores[:1], 3) == 0.0
        assert hit_rate(scores, 1) == 0.5  # the healthy row still counts
        assert nonfinite_rows(scores) == 1


def test_a_nan_or_inf_negative_counts_against_the_model_and_minus_inf_does_not_count():
    assert hit_rate(np.array([[0.9, np.nan, 0.1]]), 1) == 0.0
    assert hit_rate(np.array([[0.9, np.inf, 0.1]]), 1) == 0.0
    assert hit_rate(np.array([[0.9, -np.inf, 0.1]]), 1) == 1.0  # -inf: a candidate that does not count
    assert nonfinite_rows(np.array([[0.9, np.nan, 0.1], [0.9, -np.inf, 0.1]])) == 1
