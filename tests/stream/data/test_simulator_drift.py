"""The drifting world (stream.data.simulator's doc): items released and users joining over
time, popularity that decays, interests that shift; with drift off, today's static world."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time

import orjson
import pytest
from data_helpers import clicked_categories

from stream.contract.events import Event, validate
from stream.contract.files import world_path
from stream.data import simulator

DAY_MS = simulator.DAY_MS
SMALL = {"users": 100, "items": 2_000, "categories": 20}
N = 30_000
STATIC_FIELDS = {"items_at_start": 1.0, "item_release_rate": 0.0, "popularity_half_life_days": 0.0,
                 "users_at_start": 1.0, "user_arrival_rate": 0.0, "drift_rate": 1.0}


def clicks(events):
    """(ts, item) of every click: rec clicks and the clicks of searches."""
    for event in events:
        if event["type"] == "rec":
            if event["click"]:
                yield event["ts"], event["item"]
        else:
            for item in event["clicks"]:
                yield event["ts"], item


def shown(event):
    """Every item an event references (exposed or clicked)."""
    return [event["item"]] if event["type"] == "rec" else event["clicks"]


def run(config):
    world = simulator.World.build(config)
    return world, list(simulator.generate(config, N, world))


@pytest.fixture(scope="module", params=[1, 2])
def drifting(request):
    """The drift profile on a small world, and the same world static."""
    fields = dict(SMALL, seed=request.param)
    return run(simulator.SimConfig.drifting(**fields)), run(simulator.SimConfig(**fields))


# ---------------------------------------------------------------- drift off: today's world


def test_drift_off_is_todays_static_world_byte_for_byte():
    config = simulator.SimConfig(users=30, items=300, categories=12, seed=3)
    events = list(simulator.generate(config, 3_000))
    # digests of the stream and catalogue the simulator generated before drift existed
    assert hashlib.sha256(b"\n".join(orjson.dumps(e) for e in events)).hexdigest() == \
        "6e917712ec34c9c2dc3db8600faf25970ba1130c1f1c3eda39fd97c52f2f36db"
    catalogue = simulator.World.build(config).catalogue()
    assert hashlib.sha256(b"\n".join(orjson.dumps(r) for r in catalogue)).hexdigest() == \
        "30aac97f641a5a743517d22cf0ed8278d280ff857bc99ab900eb1b37eeabd5af"
    explicit = simulator.SimConfig(users=30, items=300, categories=12, seed=3, **STATIC_FIELDS)
    assert list(simulator.generate(explicit, 3_000)) == events


@pytest.mark.parametrize("idle", [{"item_release_rate": 0.3}, {"user_arrival_rate": 0.3},
                                  {"popularity_half_life_days": 2.0}])
def test_a_drift_speed_with_nothing_to_release_leaves_the_world_static(idle):
    """Rates act on the items and users that join later, decay on items released later: with
    everything there from the start, the events are the static world's."""
    config = simulator.SimConfig(users=30, items=300, categories=12, seed=3)
    assert list(simulator.generate(dataclasses.replace(config, **idle), 3_000)) == \
        list(simulator.generate(config, 3_000))


def test_drift_profile_and_rate():
    config = simulator.SimConfig.drifting(2.0, users=7)
    assert {k: getattr(config, k) for k in simulator.DRIFT_PROFILE} == simulator.DRIFT_PROFILE
    assert config.users == 7 and config.drift_rate == 2.0
    speeds = config.effective_drift()
    assert speeds == {"item_release_rate": 0.1, "popularity_half_life_days": 0.5, "drift": 0.02,
                      "user_arrival_rate": 0.1}
    assert simulator.SimConfig().effective_drift()["drift"] == simulator.SimConfig().drift


@pytest.mark.parametrize("fields", [{"items_at_start": 0.5}, {"users_at_start": 0.2}, {"drift_rate": 0.0},
                                    {"item_release_rate": -1.0}, {"items_at_start": 1.5},
                                    {"items_at_start": 0.5, "item_release_rate": 0.001,
                                     "popularity_half_life_days": 0.01}])
def test_bad_drift_settings_are_refused(fields):
    with pytest.raises(ValueError):
        simulator.SimConfig(**fields)


# ---------------------------------------------------------------- drift on


def test_no_event_shows_an_item_before_its_release(drifting):
    (world, events), _ = drifting
    release = dict(zip(world.item_names, world.item_release_ms))
    start = world.config.start_ms
    assert sum(r > start for r in release.values()) >= 0.45 * len(release)  # half released later
    assert max(release.values()) > events[-1]["ts"]  # the run ends while items are still released
    last = 0
    for event in events:
        assert event["ts"] >= last  # one clock, in time order
        last = event["ts"]
        assert all(release[item] <= event["ts"] for item in shown(event)), event
    late_shown = {item for event in events for item in shown(event) if release[item] > start}
    assert len(late_shown) > 100  # released items are shown and clicked
    assert all(isinstance(validate(e), Event) for e in events[::50])


def test_the_catalogue_lists_every_item_released_later_or_not(drifting):
    (world, _), _ = drifting
    assert [r["item"] for r in world.catalogue()] == world.item_names
    static = simulator.World.build(simulator.SimConfig(**SMALL, seed=world.config.seed))
    assert list(world.catalogue()) == list(static.catalogue())  # the same items and categories


def test_fresh_items_take_far_more_clicks_than_in_a_static_world(drifting):
    """Items released in the last day of the run: their click share then, against the share
    the same items get in the static world (their popularity share)."""
    (world, events), (_, static) = drifting
    end = events[-1]["ts"]
    fresh = {item for item, r in zip(world.item_names, world.item_release_ms) if end - DAY_MS <= r <= end}
    assert len(fresh) >= 50
    recent = [item for ts, item in clicks(events) if ts >= end - DAY_MS]
    drift_share = sum(item in fresh for item in recent) / len(recent)
    later = [item for _, item in clicks(static[2 * N // 3:])]
    static_share = sum(item in fresh for item in later) / len(later)
    assert drift_share > 3 * static_share, (drift_share, static_share)


def test_late_users_start_at_their_arrival(drifting):
    (world, events), (_, static) = drifting
    arrival = dict(zip((f"u{u}" for u in range(world.config.users)), world.user_arrival_ms))
    start = world.config.start_ms
    first: dict[str, int] = {}
    for event in events:
        first.setdefault(event["user"], event["ts"])
    assert all(ts >= arrival[user] for user, ts in first.items())
    late = [user for user in first if arrival[user] > start]
    assert len(late) >= 20  # users joined during the run ...
    assert all(first[user] == arrival[user] for user in late)  # ... their first event at their arrival
    assert all(arrival[user] > events[-1]["ts"] for user in arrival if user not in first)  # the rest: after it
    assert len({e["user"] for e in events[: N // 10]}) < len({e["user"] for e in static[: N // 10]})


def test_popularity_of_old_items_decays(drifting):
    """The 20 most popular items at the start lose most of their clicks by the last third (in a
    static world they keep them)."""
    (world, events), (_, static) = drifting
    start = world.config.start_ms
    weights = [c - p for p, c in zip([0.0, *world.item_cum[:-1]], world.item_cum)]
    initial = [(w, world.item_names[i]) for w, i, r in zip(weights, world.by_release, world.release_sorted)
               if r == start]
    top = {name for _, name in sorted(initial, reverse=True)[:20]}

    def first_and_last_third(run):
        return [sum(item in top for _, item in clicks(part)) for part in (run[: N // 3], run[2 * N // 3:])]

    first, last = first_and_last_third(events)
    assert last < 0.4 * first, (first, last)
    first, last = first_and_last_third(static)
    assert last > 0.8 * first, (first, last)


def test_two_drift_rates_give_measurably_different_drift():
    base = dict(SMALL, seed=5)
    slow, fast = (simulator.SimConfig.drifting(rate, **base) for rate in (1.0, 3.0))
    slow_world, fast_world = simulator.World.build(slow), simulator.World.build(fast)
    # the same world: items, categories, release order, users; only the pace differs
    assert slow_world.by_release == fast_world.by_release
    assert list(slow_world.catalogue()) == list(fast_world.catalogue())
    start = slow.start_ms
    last_release = max(slow_world.item_release_ms) - start
    assert max(fast_world.item_release_ms) - start == pytest.approx(last_release / 3, rel=0.01)

    def measures(world, config):
        events = list(simulator.generate(config, N, world))
        released_later = {item for item, r in zip(world.item_names, world.item_release_ms) if r > start}
        all_clicks = [item for _, item in clicks(events)]
        return (sum(item in released_later for item in all_clicks) / len(all_clicks),
                len({e["user"] for e in events[: N // 3]}))

    (slow_late, slow_users), (fast_late, fast_users) = measures(slow_world, slow), measures(fast_world, fast)
    assert fast_late > slow_late + 0.15, (slow_late, fast_late)  # more clicks on items released later
    assert fast_users > slow_users  # users join sooner


def test_shifting_interests_change_favourite_categories_faster():
    """A user's top categories in the first and last third of its clicks overlap less when
    interests drift faster."""
    def top3(cats: list[str]) -> set[str]:
        return {c for _, c in sorted(((cats.count(c), c) for c in set(cats)), reverse=True)[:3]}

    def overlap(config):
        shares = []
        for cats in clicked_categories(config, 60_000).values():
            third = len(cats) // 3
            shares.append(len(top3(cats[:third]) & top3(cats[-third:])) / 3)
        return sum(shares) / len(shares)

    fields = {"users": 50, "items": 2_000, "categories": 40, "seed": 6}
    assert overlap(simulator.SimConfig(**fields, drift=0.05)) < overlap(simulator.SimConfig(**fields)) - 0.2


def test_drifting_generator_is_lazy():
    start = time.perf_counter()
    events = simulator.generate(simulator.SimConfig.drifting(users=10_000, seed=1), 10_000_000)
    assert len(list(itertools.islice(events, 1_000))) == 1_000
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- the CLI


def test_cli_writes_the_world_beside_the_events(tmp_path, run_cli):
    out = tmp_path / "drift.jsonl"
    code, stdout, stderr = run_cli("data", "simulate", "--events", "3000", "--users", "50", "--items", "500",
                                   "--categories", "20", "--seed", "4", "--drift", "--drift-rate", "2",
                                   "--half-life-days", "0.5", "--no-stats", "--out", str(out))
    assert code == 0, stderr
    expected = simulator.SimConfig.drifting(2.0, users=50, items=500, categories=20, seed=4,
                                            popularity_half_life_days=0.5)
    described = json.loads(world_path(out).read_text())
    assert world_path(out) == tmp_path / "drift.world.json"
    assert described["config"] == dataclasses.asdict(expected)
    assert described["events"] == 3000
    assert described["effective_drift"] == expected.effective_drift()
    assert simulator.SimConfig(**described["config"]) == expected  # the world can be generated again
    assert [orjson.loads(x) for x in out.read_bytes().splitlines()] == list(simulator.generate(expected, 3000))
    for shown_value in ("items_at_start 0.5", "popularity_half_life_days 0.5", "drift_rate 2.0",
                        "item_release_rate 0.1", str(world_path(out)), "wrote 3,000 events", "item records"):
        assert shown_value in stdout

    static = tmp_path / "static.jsonl.gz"
    code, stdout, stderr = run_cli("data", "simulate", "--events", "100", "--users", "5", "--no-stats",
                                   "--out", str(static))
    assert code == 0, stderr
    assert json.loads((tmp_path / "static.world.json").read_text())["config"] == \
        dataclasses.asdict(simulator.SimConfig(users=5))

    code, _, stderr = run_cli("data", "simulate", "--events", "10", "--items-at-start", "0.5",
                              "--out", str(tmp_path / "bad.jsonl"))
    assert code == 2 and "item_release_rate" in stderr


def test_cli_help_shows_the_drift_flags_and_their_defaults(run_cli, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("data", "simulate", "--help")
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--drift ", "--drift-rate X", "--items-at-start", "--item-release-rate", "--half-life-days",
                 "--interest-drift", "--users-at-start", "--user-arrival-rate"):
        assert flag in text
    assert "(1.0)" in text  # --drift-rate
    assert "(default 0.0; 0.05 with --drift)" in text and "(default 0.002; 0.01 with --drift)" in text
    assert "items_at_start 0.5" in text  # the profile
