"""The HTTP endpoints on FastAPI's TestClient, over a real model and an in-memory history view."""
from __future__ import annotations

import pytest
from serving import history_of
from fastapi.testclient import TestClient

from ops.metrics import ServeMetrics, fresh_registry
from ops.settings import ServeSettings
from state.store import MemoryHistoryStore
from stream.contract import history as hist
from stream.contract.ids import item_id, user_id
from stream.serve.app import create_app
from stream.serve.models import ModelHolder
from stream.serve.pool import PopularPool
from stream.serve.service import RankingService
from stream.serve.view import HistoryView

TOKEN = "s3cret-token"


def make_client(directory, **settings) -> tuple[TestClient, RankingService]:
    store = MemoryHistoryStore()
    store.apply({user_id("u1"): hist.encode(history_of(5))})
    view = HistoryView(store)
    view.ready = True
    pool = PopularPool(capacity=20)
    for j in range(30):
        pool.add(item_id(f"i{j}"), f"i{j}", 1_700_000_000_000 + j)
    service = RankingService(view, ModelHolder(directory), pool, ServeMetrics(fresh_registry()), batch_wait_s=0.001)
    config = ServeSettings(checkpoint_dir=str(directory), max_candidates=50, **settings)
    return TestClient(create_app(service, config)), service


@pytest.fixture(scope="module")
def client(_trained_dir):
    c, _ = make_client(_trained_dir)  # reads the directory only: one client for the module
    with c:
        yield c


def test_rank_returns_the_candidates_ranked_with_the_model_and_step(client):
    body = {"user": "u1", "candidates": ["i1", "i2", 3, "never-seen"], "k": 3}
    r = client.post("/v1/rank", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "unisar" and out["step"] == 2 and out["history"] == {"rec": 5, "search": 1}
    assert len(out["items"]) == 3
    scores = [i["score"] for i in out["items"]]
    assert scores == sorted(scores, reverse=True)
    assert {i["item"] for i in out["items"]} <= {"i1", "i2", 3, "never-seen"}
    full = client.post("/v1/rank", json=body | {"k": 10}).json()["items"]  # k above the candidates: all of them
    assert sorted(map(str, (i["item"] for i in full))) == ["3", "i1", "i2", "never-seen"]


def test_a_user_unknown_to_the_view_ranks_with_an_empty_history(client):
    out = client.post("/v1/rank", json={"user": 12345, "query": "red shoes", "candidates": ["i1", "i2"]}).json()
    assert out["history"] == {"rec": 0, "search": 0} and len(out["items"]) == 2


def test_recommend_ranks_the_pool(client):
    out = client.post("/v1/recommend", json={"user": "u1", "k": 5}).json()
    assert out["pool"] == 30 and len(out["items"]) == 5
    assert all(i["item"].startswith("i") for i in out["items"])
    with_query = client.post("/v1/recommend", json={"user": "u1", "query": ["w1", 2], "k": 5})
    assert with_query.status_code == 200


@pytest.mark.parametrize("body, field, reason", [
    ({"user": "u1", "candidates": ["i1"], "colour": "red"}, "colour", "unknown field"),
    ({"user": "u1", "candidates": [f"i{j}" for j in range(51)]}, "candidates", "at most 50"),
    ({"user": "u1", "candidates": []}, "candidates", "at least 1"),
    ({"user": "u1", "query": "x" * 513, "candidates": ["i1"]}, "query", "at most 512 characters"),
    ({"user": "u1", "query": " ".join(["w"] * 33), "candidates": ["i1"]}, "query", "at most 32 words"),
    ({"user": "u1", "query": [1] * 33, "candidates": ["i1"]}, "query", "at most 32"),
    ({"user": "u1", "query": "   ", "candidates": ["i1"]}, "query", "at least one word"),
    ({"user": True, "candidates": ["i1"]}, "user", "valid string"),
    ({"user": "", "candidates": ["i1"]}, "user", "at least 1 character"),
    ({"user": "u1", "candidates": [1.5]}, "candidates.0", "valid integer"),
    ({"user": "u1", "candidates": ["i1", ["nested"]]}, "candidates.1", "valid string"),
    ({"user": "u1", "candidates": [2**64]}, "candidates.0", "less than"),
    ({"user": "u1", "candidates": ["i1"], "k": "3"}, "k", "valid integer"),
    ({"user": "u1", "candidates": ["i1"], "k": 0}, "k", "greater than or equal to 1"),
    ({"candidates": ["i1"]}, "user", "Field required"),
    ({"user": "u1"}, "candidates", "Field required"),
])
def test_bad_requests_get_422_naming_the_field_and_the_reason(client, body, field, reason):
    r = client.post("/v1/rank", json=body)
    assert r.status_code == 422, r.text
    (problem,) = [p for p in r.json()["detail"] if p["field"] == field]
    assert reason in problem["reason"]
    assert "input" not in r.text  # a refused request is not echoed back


def test_a_body_that_is_not_json_is_refused(client):
    r = client.post("/v1/rank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_refusals_are_counted(ckpt_dir):
    c, _ = make_client(ckpt_dir.path)
    with c:
        c.post("/v1/rank", json={"user": "u1", "candidates": []})
        text = c.get("/metrics").text
    assert 'unisar_serve_requests_total{endpoint="rank",outcome="bad_request"} 1.0' in text


def test_history_endpoint_and_page_are_off_unless_enabled(client, ckpt_dir):
    assert client.get("/v1/users/u1/history").status_code == 404
    assert client.get("/").status_code == 404
    on, _ = make_client(ckpt_dir.path, history_endpoint=True, inspect_page=True)
    with on:
        timeline = on.get("/v1/users/u1/history").json()["timeline"]
        assert [e["type"] for e in timeline] == ["rec"] * 5 + ["search"]
        assert [e["transition"] for e in timeline] == [None] + ["rec->rec"] * 4 + ["rec->search"]
        assert "<html" in on.get("/").text.lower()


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN},
                                     {"authorization": "Basic " + TOKEN}])
def test_with_a_token_every_endpoint_but_health_requires_it(ckpt_dir, headers):
    c, _ = make_client(ckpt_dir.path, serve_token=TOKEN, history_endpoint=True, inspect_page=True)
    with c:
        assert c.get("/health", headers=headers).status_code == 200
        for method, path in (("post", "/v1/rank"), ("post", "/v1/recommend"), ("get", "/v1/users/u1/history"),
                             ("get", "/ready"), ("get", "/metrics"), ("get", "/"), ("get", "/openapi.json"),
                             ("get", "/docs")):
            r = getattr(c, method)(path, headers=headers, **({"json": {"user": "u1", "candidates": ["i1"]}}
                                                                if method == "post" else {}))
            assert r.status_code == 401, (path, r.status_code)
        good = {"authorization": f"Bearer {TOKEN}"}
        assert c.post("/v1/rank", json={"user": "u1", "candidates": ["i1"]}, headers=good).status_code == 200
        assert c.get("/ready", headers=good).status_code == 200
        assert c.get(f"/?token={TOKEN}").status_code == 200  # a browser opening the page
        assert 'endpoint="rank",outcome="unauthorized"} 1.0' in c.get("/metrics", headers=good).text


def test_without_a_model_rankings_are_503_and_not_ready(tmp_path):
    c, _ = make_client(tmp_path / "empty")
    with c:
        assert c.get("/ready").status_code == 503
        assert c.post("/v1/rank", json={"user": "u1", "candidates": ["i1"]}).status_code == 503
        assert c.get("/health").status_code == 200


def test_openapi_describes_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/rank", "/v1/recommend", "/v1/users/{user}/history", "/health", "/ready"} <= set(spec["paths"])


def test_recommend_leaves_out_what_the_user_clicked_unless_asked(_trained_dir):
    c, service = make_client(_trained_dir)
    history = hist.History(rec=(hist.RecBehaviour(1000, item_id("i25")),),
                           search=(hist.SearchBehaviour(1500, (7,), (item_id("i27"), item_id("i3"))),))
    service.view.store.apply({user_id("u2"): hist.encode(history)})
    with c:
        def recommended(**extra) -> set[str]:
            out = c.post("/v1/recommend", json={"user": "u2", "k": 50, **extra})
            assert out.status_code == 200, out.text
            return {i["item"] for i in out.json()["items"]}

        fresh, every = recommended(), recommended(include_seen=True)
        assert {"i25", "i27"} <= every and fresh == every - {"i25", "i27"}  # i3 is not in the pool
        assert recommended() | {"i25", "i27"} == {i["item"] for i in c.post(
            "/v1/recommend", json={"user": "nobody", "k": 50}).json()["items"]}  # nothing seen: all
        refused = c.post("/v1/recommend", json={"user": "u2", "include_seen": "yes"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "include_seen"
