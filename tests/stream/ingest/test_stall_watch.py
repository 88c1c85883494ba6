"""The faust engine's stall watch: a stalled partition is sought once, then fails only
while new events keep arriving; slow, idle or cut-off partitions never fail."""
from __future__ import annotations

from stream.ingest.faust_app import StallWatch


def run(watch: StallWatch, ticks: list[tuple[int, int]], every_s: float = 1.0) -> list[str]:
    return [watch.observe(0, position, high, i * every_s) for i, (position, high) in enumerate(ticks)]


def test_a_moving_partition_is_never_flagged():
    assert set(run(StallWatch(5), [(i, i + 100) for i in range(60)])) == {"ok"}


def test_an_idle_partition_is_never_flagged():
    assert set(run(StallWatch(5), [(100, 100)] * 60)) == {"ok"}


def test_a_stall_is_sought_once_then_fails_while_events_keep_arriving():
    actions = run(StallWatch(5), [(10, 100 + i) for i in range(20)])
    assert actions.index("seek") == 5 and actions.count("seek") == 1
    assert actions.index("fail") == 15


def test_a_stall_without_new_events_is_sought_but_never_fails():
    actions = run(StallWatch(5), [(10, 100)] * 60)  # e.g. a broker that does not answer
    assert actions.count("seek") == 1 and "fail" not in actions


def test_progress_after_a_seek_clears_the_stall():
    watch = StallWatch(5)
    run(watch, [(10, 100)] * 7)
    assert watch.observe(0, 11, 100, 8.0) == "ok"
    later = [watch.observe(0, 11, 100 + i, 9.0 + i) for i in range(6)]
    assert later.count("seek") == 1 and later.index("seek") == 4  # a new stall (since 8 s), a new seek


def test_partitions_no_longer_owned_are_forgotten():
    watch = StallWatch(5)
    run(watch, [(10, 100)] * 7)
    watch.keep(set())
    assert watch.observe(0, 10, 100, 100.0) == "ok"
