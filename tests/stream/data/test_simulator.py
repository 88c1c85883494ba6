from __future__ import annotations

import itertools
import time

import orjson
import pytest
from data_helpers import clicked_categories

from stream.contract.events import Event, Rejection, validate
from stream.contract.files import read_items
from stream.contract.ids import item_id
from stream.contract.items import category_token
from stream.data import simulator, stats

N = 200_000


@pytest.fixture(scope="module")
def realised():
    config = simulator.SimConfig(users=1000, seed=11)
    world = simulator.World.build(config)
    accumulator = stats.StreamStats(dict(world.categories()))
    last_ts = 0
    start = time.perf_counter()
    for event in simulator.generate(config, N, world):
        assert event["ts"] >= last_ts  # one clock, users interleaved
        last_ts = event["ts"]
        accumulator.add(event)
    return config, accumulator.result(), N / (time.perf_counter() - start)


@pytest.mark.parametrize("name", ["same_r2r", "same_s2r", "same_s2s", "same_r2s", "rec_clicks_per_search",
                                  "search_click_share", "rec_exposure_share"])
def test_realised_statistics_within_20_percent_of_targets(realised, name):
    config, result, _ = realised
    target = config.targets()[name]
    value = result["same_category"][name[5:]] if name.startswith("same_") else result[name]
    assert abs(value - target) <= 0.2 * target, f"{name}: realised {value:.4f}, target {target}"


def test_stream_shape(realised):
    _, result, rate = realised
    assert result["events"] == N and result["users"] == 1000
    assert all(result["transitions"][t] > 1000 for t in stats.TRANSITIONS)
    assert result["out_of_order"] == 0
    assert rate > 20_000  # generation plus statistics; generation alone runs at > 100k/s


def test_events_validate_and_are_deterministic():
    config = simulator.SimConfig(users=50, items=500, categories=20, seed=5)
    first = list(simulator.generate(config, 5_000))
    assert first == list(simulator.generate(config, 5_000))
    other = list(simulator.generate(simulator.SimConfig(users=50, items=500, categories=20, seed=6), 5_000))
    assert first != other
    for event in first:
        assert isinstance(validate(event), Event), event
    queries = [e["query"] for e in first if e["type"] == "search"]
    assert queries and all(1 <= len(q) <= 4 for q in queries)
    assert len({e["user"] for e in first}) == 50


def test_queries_reveal_the_category_of_clicked_items():
    config = simulator.SimConfig(users=100, items=2_000, categories=50, seed=2)
    world = simulator.World.build(config)
    category = dict(world.categories())
    for event in itertools.islice(simulator.generate(config, 20_000, world), 20_000):
        if event["type"] == "search" and event["clicks"]:
            head = (event["query"][0] - 1) // config.words_per_category  # first word: the category's own
            assert {category[i] for i in event["clicks"]} == {f"c{head}"}


def test_users_have_persistent_interests():
    """Learnable signal: a user's clicks concentrate on few categories, unlike popularity."""
    config = simulator.SimConfig(users=200, items=5_000, categories=100, seed=4)
    top3 = []
    for cats in clicked_categories(config, 60_000).values():
        counts = sorted((cats.count(c) for c in set(cats)), reverse=True)
        top3.append(sum(counts[:3]) / len(cats))
    assert sum(top3) / len(top3) > 0.6  # about 3 of 100 categories hold most of a user's clicks


def test_generator_is_lazy_with_flat_memory():
    start = time.perf_counter()
    events = simulator.generate(simulator.SimConfig(users=10_000, seed=1), 10_000_000)
    assert len(list(itertools.islice(events, 1_000))) == 1_000
    assert time.perf_counter() - start < 5


def test_long_runs_stay_before_2100():
    # 2,000 events with ~30-year gaps would end around the year 62000: the clock is compressed
    config = simulator.SimConfig(users=2, items=100, categories=10, session_break=1.0, break_gap_s=1e9)
    events = list(simulator.generate(config, 2_000))
    assert all(isinstance(validate(e), Event) for e in events)
    assert events[-1]["ts"] - events[0]["ts"] > 30 * 365 * 86_400_000  # compressed, not clipped


def test_cli_simulate(tmp_path, run_cli):
    out = tmp_path / "sim.jsonl"
    code, stdout, stderr = run_cli("data", "simulate", "--events", "20000", "--users", "100", "--seed", "3",
                                   "--out", str(out))
    assert code == 0, stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 20_000 and all(isinstance(validate(orjson.loads(x)), Event) for x in lines)
    catalogue = [record for _line, record in read_items(tmp_path / "sim.items.jsonl")]
    assert len(catalogue) == 20_000 and not any(isinstance(r, Rejection) for r in catalogue)  # --items default
    assert "wrote 20,000 item records" in stdout
    world = simulator.World.build(simulator.SimConfig(users=100, seed=3))
    assert {r.item: r.categories for r in catalogue} == {item_id(i): (category_token(1, c),)
                                                         for i, c in world.categories()}
    for label in ("same category r2r", "same category s2r", "same category s2s", "same category r2s",
                  "rec clicks / search", "searches with click", "(target 8%)", "events/s"):
        assert label in stdout
    again = tmp_path / "again.jsonl"
    run_cli("data", "simulate", "--events", "20000", "--users", "100", "--seed", "3", "--out", str(again))
    assert again.read_bytes() == out.read_bytes()


def test_catalogue_holds_each_items_category_as_level_1():
    world = simulator.World.build(simulator.SimConfig(users=2, items=300, categories=12, seed=9))
    records = list(world.catalogue())
    assert [r["item"] for r in records] == world.item_names
    assert all(r == {"v": 1, "item": item, "categories": [category]}
               for r, (item, category) in zip(records, world.categories()))
    assert {r["categories"][0] for r in records} == {f"c{c}" for c in range(12)}  # every category has an item
