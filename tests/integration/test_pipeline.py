"""The ingestion pipeline end to end on the real embedded broker and a real RocksDB."""
from __future__ import annotations

import urllib.request

import orjson
import pytest
from eventgen import malformed_values, valid_events
from kafkatools import read_all, wait_until_caught_up

from state.store import RocksHistoryStore
from stream.contract import history as hist
from stream.contract import samples
from stream.kafka import ensure_topics_sync
from stream.contract.offline import OfflineStream
from stream.ingest.producer import EventProducer

pytestmark = pytest.mark.integration


def produce(settings, values: list[tuple[bytes, bytes]]) -> None:
    with EventProducer(settings) as producer:
        for key, value in values:
            producer.send_raw(key, value)


def offline(events: list[dict]) -> tuple[dict[int, hist.History], dict[str, samples.Sample]]:
    """Histories and samples computed directly from the events, without Kafka."""
    stream = OfflineStream()
    emitted = [samples.decode(s) for s in stream.feed(orjson.dumps(e) for e in events)]
    return {u: hist.decode(v) for u, v in stream.histories.items()}, {s.event_id: s for s in emitted}


def stored_histories(state_dir) -> dict[int, hist.History]:
    with RocksHistoryStore(state_dir) as store:
        return {u: hist.decode(v) for u, v in store.items()}


def without_offsets(histories: dict[int, hist.History]) -> dict[int, tuple]:
    return {u: (h.rec, h.search) for u, h in histories.items()}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


ENGINES = pytest.mark.parametrize("engine", ["aiokafka", "faust"])


@ENGINES
def test_worker_builds_histories_samples_and_dead_letters(settings, worker_factory, engine):
    events = valid_events(10_000, users=500, seed=7)
    bad = malformed_values(200)
    values = [(str(e["user"]).encode(), orjson.dumps(e)) for e in events]
    # bad events spread through the stream, keyed like real ones
    for i, (value, key, _) in enumerate(bad):
        values.insert((i * 53) % len(values), (key, value))
    ensure_topics_sync(settings)
    produce(settings, values)

    worker = worker_factory(settings, engine=engine)
    wait_until_caught_up(settings, len(values), procs=[worker])
    text = scrape(worker.metrics_port)
    assert worker.stop() == 0

    expected_histories, expected_samples = offline(events)
    assert without_offsets(stored_histories(settings.state_dir)) == without_offsets(expected_histories)

    dlq = read_all(settings, settings.dlq_topic)
    assert sorted(r.value for r in dlq) == sorted(v for v, _, _ in bad)
    for record in dlq:
        headers = dict(record.headers)
        assert b"expected" in headers["reason"] and headers["stage"] in (b"decode", b"validate")

    got = [samples.decode(r.value) for r in read_all(settings, settings.samples_topic)]
    n_expected = sum(1 for e in events if e["type"] == "rec" or e.get("clicks"))
    assert len(got) == n_expected == len(expected_samples)
    by_id = {s.event_id: s for s in got}
    assert by_id.keys() == expected_samples.keys()
    for event_id, want in expected_samples.items():
        have = by_id[event_id]
        assert (have.task, have.items, have.label, have.query, have.ts, have.user) == (
            want.task, want.items, want.label, want.query, want.ts, want.user)
        assert (have.history.rec, have.history.search) == (want.history.rec, want.history.search)

    assert metric(text, "unisar_dead_letters_total") == 200
    assert metric(text, "unisar_events_total", outcome="applied") == 10_000
    assert metric(text, "unisar_samples_total") == n_expected
    assert metric(text, "unisar_event_processing_seconds_count") == 10_200
    assert "unisar_consumer_lag" in text and "unisar_users_stored" in text
    assert metric(text, "unisar_worker_partitions_assigned") == settings.partitions  # the only worker owns all


def test_faust_command_runs_the_faust_engine(settings, tmp_path):
    """`faust -A stream.ingest.faust_main worker`: faust's own worker command, settings from
    UNISAR_* variables, builds the same histories and exits cleanly on SIGTERM."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from kafkatools import wait_until_caught_up

    from ops.broker import free_port
    from ops.metrics import scrape as scrape_values
    from ops.processes import settings_env

    events = valid_events(1_000, users=80, seed=3)
    ensure_topics_sync(settings)
    produce(settings, [(str(e["user"]).encode(), orjson.dumps(e)) for e in events])
    faust = Path(sys.executable).with_name("faust")
    env = settings_env(settings, metrics_port=free_port())
    with open(tmp_path / "faust.log", "wb") as log:
        proc = subprocess.Popen([str(faust), "-A", "stream.ingest.faust_main", "worker", "-l", "warn",
                                 "--without-web"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_caught_up(settings, len(events), procs=[type("P", (), {"proc": proc})()])
        assert scrape_values(int(env["UNISAR_METRICS_PORT"]))["unisar_worker_partitions_assigned"] == settings.partitions
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "faust.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    expected, _ = offline(events)
    assert without_offsets(stored_histories(settings.state_dir)) == without_offsets(expected)
