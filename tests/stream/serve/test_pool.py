from __future__ import annotations

import orjson

from stream.contract.events import validate
from stream.serve.pool import PopularPool

HOUR = 3_600_000


def test_recent_clicks_outweigh_older_ones():
    pool = PopularPool(capacity=10, half_life_s=3600)
    for _ in range(3):
        pool.add(1, "old", 0)
    for _ in range(2):
        pool.add(2, "new", 2 * HOUR)  # 3 clicks two half-lives ago weigh 0.75 of one now
    assert pool.top(2) == [2, 1]
    assert pool.name(1) == "old"


def test_the_pool_stays_bounded_and_keeps_the_heaviest():
    pool = PopularPool(capacity=5)
    for item in range(1, 101):
        for _ in range(item):  # item i clicked i times
            pool.add(item, f"i{item}", 0)
    assert len(pool) <= 10
    assert pool.top(5) == [100, 99, 98, 97, 96]
    assert set(pool.raw) == set(pool.weights)


def test_weights_rebase_instead_of_overflowing():
    pool = PopularPool(capacity=3, half_life_s=1)
    pool.add(1, "a", 0)
    pool.add(2, "b", 10_000_000)  # 10,000 half-lives later
    assert pool.top() == [2, 1]
    assert all(w < 1e30 for w in pool.weights.values())


def test_events_count_clicks_only_with_their_raw_ids():
    pool = PopularPool()
    for raw in ({"v": 1, "event_id": "1", "user": "u", "ts": 1_700_000_000_000, "type": "rec", "item": 7, "click": 1},
                {"v": 1, "event_id": "2", "user": "u", "ts": 1_700_000_000_000, "type": "rec", "item": "x", "click": 0},
                {"v": 1, "event_id": "3", "user": "u", "ts": 1_700_000_000_000, "type": "search", "query": "q",
                 "clicks": ["a", "b"]}):
        obj = orjson.loads(orjson.dumps(raw))
        pool.add_event(validate(obj), obj)
    assert sorted(map(str, (pool.name(i) for i in pool.top()))) == ["7", "a", "b"]
