"""The worker's pure partition step, shared by both engines: every record is accounted for
exactly once (applied, duplicate, forwarded or dead-lettered), whatever its bytes."""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.contract import history as hist
from stream.ingest.partition_step import FORWARDED, home_partition, step_partition

PARTITIONS = 4


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list
    offset: int
    timestamp: int = 1_700_000_000_000


def event(user: str, n: int) -> bytes:
    return orjson.dumps({"v": 1, "event_id": f"e{n}", "user": user, "ts": 1_700_000_000_000 + n, "type": "rec",
                         "item": f"i{n % 5}", "click": 1})


users = st.sampled_from(["u1", "u2", "u3", "u4", "u5", "u6"])
valid = st.tuples(users, st.integers(0, 100)).map(lambda t: (t[0].encode(), event(*t)))
junk = st.tuples(st.none() | st.binary(max_size=8), st.none() | st.binary(max_size=60))
headers = st.sampled_from([[], [(FORWARDED, b"0:5")], [(FORWARDED, b"junk")], [("other", b"x")]])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(valid | junk, headers), max_size=30), st.integers(0, PARTITIONS - 1))
def test_every_record_is_accounted_for_exactly_once(drawn, partition):
    records = [Record(key, value, hs, offset) for offset, ((key, value), hs) in enumerate(drawn)]
    histories: dict[int, bytes] = {}
    out = step_partition(partition, records, histories, lambda users: [None] * len(users), PARTITIONS, hist.Limits())
    counted = sum(n for (kind, outcome), n in out.counts.items() if outcome != "sample")
    assert counted + len(out.dead_letters) == len(records)
    assert sum(n for (_, outcome), n in out.counts.items() if outcome == "forwarded") == len(out.forwards)
    for home, record, hs in out.forwards:
        assert home != partition and home == home_partition(record.key, PARTITIONS)
        assert [v for k, v in hs if k == FORWARDED] == [f"{partition}:{record.offset}".encode()] or \
            any(k == FORWARDED for k, _ in record.headers)
    for _, why in out.dead_letters:
        assert why.stage in ("decode", "validate", "route", "step") and why.reason


def test_a_redelivered_run_is_skipped_and_emits_nothing():
    key = next(k for k in (f"u{i}".encode() for i in range(50)) if home_partition(k, PARTITIONS) == 1)
    records = [Record(key, event(key.decode(), n), [], n) for n in range(5)]
    histories: dict[int, bytes] = {}
    first = step_partition(1, records, histories, lambda users: [None] * len(users), PARTITIONS, hist.Limits())
    again = step_partition(1, records, histories, lambda users: [None] * len(users), PARTITIONS, hist.Limits())
    assert first.counts[("rec", "applied")] == 5 and len(first.samples) == 5
    assert again.counts == {("rec", "duplicate"): 5} and again.samples == [] and again.loaded == []
