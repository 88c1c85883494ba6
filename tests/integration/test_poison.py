"""No message can stop a worker or lose a user's events, on the real broker and RocksDB.

Each poison case gets a user of its own: 40 valid events, the bad message, 40 more. One
worker process reads them all; each case then checks that the bad message is in the DLQ
with a reason and that its user's history is exactly the offline one of its valid events.
A second test sends one user's events to every partition explicitly.
"""
from __future__ import annotations

import orjson
import pytest
from kafka import KafkaProducer
from kafkatools import read_all, wait_until_caught_up
from test_pipeline import offline, stored_histories, without_offsets

from ops.processes import Child
from ops.settings import Settings
from stream.contract import samples
from stream.contract.ids import user_id
from stream.kafka import ensure_topics_sync
from stream.ingest.partition_step import home_partition

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000


def user_events(user: str, n: int, start: int = 0) -> list[dict]:
    """Alternating rec clicks and searches, one second apart."""
    out = []
    for i in range(start, start + n):
        common = {"v": 1, "event_id": f"{user}-{i}", "user": user, "ts": T0 + 1000 * i}
        if i % 3:
            out.append({**common, "type": "rec", "item": f"i{i % 17}", "click": 1})
        else:
            out.append({**common, "type": "search", "query": f"w{i % 5} w{i % 7}", "clicks": [f"i{i % 11}"]})
    return out


def with_(event: dict, **changes) -> bytes:
    return orjson.dumps({**event, **changes})


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# case -> (the bad message's key, its value), built from a valid event of the case's user
POISON = {
    "tombstone": lambda e: (e["user"].encode(), None),
    "click 1.0": lambda e: (e["user"].encode(), with_(e, type="rec", item="i1", click=1.0)),
    "type as a list": lambda e: (e["user"].encode(), with_(e, type=["rec"])),
    "nested 1000 deep": lambda e: (e["user"].encode(),
                                   orjson.dumps({**e, "item": "X", "click": 1, "type": "rec"}).replace(
                                       b'"X"', deep(1000))),
    "no key": lambda e: (None, orjson.dumps(e)),
    "v true": lambda e: (e["user"].encode(), with_(e, v=True)),
    "v 1.0": lambda e: (e["user"].encode(), with_(e, v=1.0)),
}


def producer(settings) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=5, enable_idempotence=False)


@pytest.fixture(scope="module")
def poisoned_run(broker, tmp_path_factory):
    """One worker over every case's stream; what each case's assertions read."""
    tmp = tmp_path_factory.mktemp("poison")
    settings = Settings(brokers=broker.bootstrap, events_topic="ev-poison", samples_topic="sm-poison",
                        dlq_topic="dlq-poison", changelog_topic="cl-poison", group="g-poison",
                        state_dir=str(tmp / "state"), partitions=4, metrics_port=0)
    ensure_topics_sync(settings)
    valid, bad = {}, {}
    with producer(settings) as p:
        for n, (case, make) in enumerate(POISON.items()):
            user = f"p{n}"
            before, after = user_events(user, 40), user_events(user, 40, start=41)
            bad[case] = make(user_events(user, 1, start=40)[0])
            for event in before:
                p.send(settings.events_topic, orjson.dumps(event), key=user.encode())
            p.send(settings.events_topic, bad[case][1], key=bad[case][0])
            for event in after:
                p.send(settings.events_topic, orjson.dumps(event), key=user.encode())
            valid[case] = before + after
        p.flush()
    worker = Child("worker", settings, tmp / "worker.log")
    try:
        wait_until_caught_up(settings, sum(len(v) + 1 for v in valid.values()), procs=[worker])
        alive = worker.alive()
    finally:
        code = worker.stop()
    return {"settings": settings, "valid": valid, "bad": bad, "alive": alive, "exit": code,
            "histories": stored_histories(settings.state_dir), "dlq": read_all(settings, settings.dlq_topic)}


@pytest.mark.parametrize("case", list(POISON))
def test_a_poison_message_is_dead_lettered_and_the_worker_goes_on(poisoned_run, case):
    run = poisoned_run
    assert run["alive"] and run["exit"] == 0  # it kept running, then stopped cleanly
    key, value = run["bad"][case]
    letters = [r for r in run["dlq"] if r.value == value and r.key == key]
    assert len(letters) == 1, f"{case}: expected the message once in the DLQ, found {len(letters)}"
    headers = dict(letters[0].headers)
    assert b"expected" in headers["reason"] and headers["stage"] in (b"decode", b"validate", b"route")
    user = user_id(run["valid"][case][0]["user"])
    want, _ = offline(run["valid"][case])
    assert without_offsets({user: run["histories"][user]}) == without_offsets(want)


def test_one_users_events_on_every_partition_are_applied_exactly_once(settings, worker_factory):
    """A producer with another partitioner, or a grown topic: the worker forwards each event to
    the user's home partition; the history holds every event exactly once, and so do the samples."""
    ensure_topics_sync(settings)
    events = user_events("split", 120) + user_events("other", 30)
    with producer(settings) as p:
        for i, event in enumerate(events):
            p.send(settings.events_topic, orjson.dumps(event), key=event["user"].encode(),
                   partition=i % settings.partitions)
        p.flush()
    forwarded = sum(1 for i, e in enumerate(events)
                    if home_partition(e["user"].encode(), settings.partitions) != i % settings.partitions)
    assert forwarded > 0
    worker = worker_factory(settings)
    wait_until_caught_up(settings, len(events) + forwarded, procs=[worker])
    assert worker.stop() == 0

    want, want_samples = offline(events)
    assert without_offsets(stored_histories(settings.state_dir)) == without_offsets(want)
    got = [samples.decode(r.value) for r in read_all(settings, settings.samples_topic)]
    assert sorted(s.event_id for s in got) == sorted(want_samples)
