from __future__ import annotations

import numpy as np
import pytest
import torch
from serving import history_of

from model.precision import cpu_has_bf16, use_bf16
from stream.contract.history import History
from stream.contract.ids import item_id, user_id, word_id
from stream.serve.ranking import RankRequest, inference_threads, score_requests, top_k


@pytest.fixture(scope="module")
def learner(_trained_dir):
    from model.learner import Learner

    return Learner.from_state_dict(torch.load(_trained_dir / "ckpt-000000000002.pt", weights_only=True))


def items(*names) -> np.ndarray:
    return np.array([item_id(n) for n in names], np.int64)


def test_a_batch_scores_each_request_as_it_would_alone(learner):
    # different tasks, users, histories and candidate counts in one forward pass
    requests = [RankRequest(user_id("u1"), history_of(), (), items("i1", "i2", "i3", "i4")),
                RankRequest(user_id("u2"), history_of(2), (word_id("red"),), items("i5", "i6")),
                RankRequest(user_id("u3"), History(), (), items("i7"))]
    together = score_requests(learner, requests)
    for request, scores in zip(requests, together):
        (alone,) = score_requests(learner, [request])
        assert scores.shape == (len(request.candidates),)
        np.testing.assert_allclose(scores, alone, rtol=1e-5, atol=1e-6)


def test_scores_follow_the_candidates_order(learner):
    request = RankRequest(user_id("u1"), history_of(), (), items("i1", "i2", "i3"))
    (forward,) = score_requests(learner, [request])
    (backward,) = score_requests(learner, [RankRequest(request.user, request.history, (), request.candidates[::-1])])
    np.testing.assert_allclose(forward, backward[::-1], rtol=1e-5, atol=1e-6)


def test_unknown_items_and_users_score_as_cold_not_padding(learner):
    (scores,) = score_requests(learner, [RankRequest(user_id("nobody"), History(), (word_id("never-seen"),),
                                                     items("i1", "never-seen-1", "never-seen-2"))])
    assert np.isfinite(scores).all()
    assert scores[1] == pytest.approx(scores[2])  # both take the one unknown-item vector


def test_the_query_changes_the_ranking_task(learner):
    base = RankRequest(user_id("u1"), history_of(), (), items("i1", "i2", "i3"))
    (rec,) = score_requests(learner, [base])
    (search,) = score_requests(learner, [RankRequest(base.user, base.history, (word_id("red"),), base.candidates)])
    assert not np.allclose(rec, search)


def test_bf16_scores_stay_close_to_fp32(learner):
    request = RankRequest(user_id("u1"), history_of(), (), items(*(f"i{j}" for j in range(20))))
    (fp32,) = score_requests(learner, [request])
    (bf16,) = score_requests(learner, [request], bf16=True)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)


def test_top_k_is_best_first_with_ties_in_candidate_order_and_nan_last():
    scores = np.array([0.1, 0.5, 0.5, -np.inf, 0.9], np.float32)
    assert top_k(scores, 3).tolist() == [4, 1, 2]
    assert top_k(scores, 10).tolist() == [4, 1, 2, 0, 3]


def test_precision_follows_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert not cpu_has_bf16(cpuinfo)
    assert not cpu_has_bf16(tmp_path / "missing")
    import torch

    assert use_bf16("fp32", torch.device("cpu")) is False
    assert use_bf16("bf16", torch.device("cpu")) is True
    assert use_bf16("auto", torch.device("cuda")) is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    with pytest.raises(ValueError, match="precision: expected one of"):
        use_bf16("fp16", torch.device("cpu"))


def test_inference_leaves_a_core_to_the_http_loop(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert inference_threads() == 1 and inference_threads(4) == 4
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert inference_threads() == 1
