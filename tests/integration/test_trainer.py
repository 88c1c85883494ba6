"""The continual trainer on the real broker: it learns from sar.samples, checkpoints, and
after a kill -9 resumes from its newest checkpoint with its metrics continuing."""
from __future__ import annotations

import time

import pytest

from eventgen import valid_events

from ops.broker import free_port
from ops.processes import Child
from ops.metrics import scrape
from state.checkpoints import CheckpointDir
from stream.kafka import ensure_topics_sync
from stream.contract.offline import OfflineStream

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def produce_samples(settings, n_events: int, repeat_first: int = 0) -> int:
    """The samples of `n_events` events, the first `repeat_first` of them sent twice (as a
    worker's at-least-once redelivery would)."""
    import orjson
    from kafka import KafkaProducer

    encoded = list(OfflineStream().feed(orjson.dumps(e) for e in valid_events(n_events, users=200, seed=4)))
    producer = KafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=10)
    for value in encoded[:repeat_first] + encoded:
        producer.send(settings.samples_topic, value=value)
    producer.flush()
    producer.close()
    return len(encoded)


def start_trainer(settings, tmp_path, port: int, name: str) -> Child:
    return Child("train", settings, tmp_path / f"{name}.log", trainer_metrics_port=port,
                 checkpoint_dir=tmp_path / "ckpt", batch_size=128, max_wait_s=0.5, checkpoint_every_steps=4,
                 n_items=4096, n_users=512, n_words=1024)


def wait_for(port: int, proc, name: str, at_least: float, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.alive(), "trainer exited early"
        try:
            metrics = scrape(port)
            if metrics.get(name, 0) >= at_least:
                return metrics
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{name} did not reach {at_least} in {timeout_s} s")


def test_trainer_learns_checkpoints_and_resumes_after_kill_9(settings, tmp_path):
    ensure_topics_sync(settings)
    produce_samples(settings, 12_000, repeat_first=300)
    port = free_port()
    first = start_trainer(settings, tmp_path, port, "first")
    metrics = wait_for(port, first, "unisar_checkpoints_total", 2)
    for name in ("unisar_train_loss", "unisar_hr", "unisar_ndcg", "unisar_freshness_seconds_count",
                 "unisar_embedding_rows_used", "unisar_train_samples_total", "unisar_model_step"):
        assert name in metrics, name
    assert metrics.get("unisar_train_samples_skipped_total", 0) > 0  # repeats dropped by event id
    first.kill()
    ckpts = CheckpointDir(tmp_path / "ckpt")
    saved = ckpts.steps()
    assert saved, "no checkpoint was written"
    state = ckpts.load_latest()  # loads with weights_only=True: nothing torn
    assert state["step"] == saved[-1] and state["offsets"]

    second = start_trainer(settings, tmp_path, port, "second")
    try:
        resumed = wait_for(port, second, "unisar_model_step", saved[-1] + 2)
        assert resumed["unisar_model_step"] >= saved[-1] + 2
        assert resumed["unisar_train_steps_total"] < resumed["unisar_model_step"]  # it did not start over
    finally:
        assert second.stop() == 0
    assert max(CheckpointDir(tmp_path / "ckpt").steps()) > saved[-1]


def test_a_shedding_trainer_skips_a_stale_backlog_and_learns_every_fresh_sample(settings, tmp_path):
    """2,000 events' samples ingested an hour ago, then 1,000 fresh ones: with --max-staleness 60
    every stale sample is shed (counted, its offset consumed) and every fresh one is learnt."""
    import orjson
    from kafka import KafkaProducer

    from ops.metrics import scrape_samples
    from stream.contract.events import parse_event
    from stream.contract.samples import decode

    ensure_topics_sync(settings)
    stream, now_ms = OfflineStream(), int(time.time() * 1000)
    events = [parse_event(orjson.dumps(e)) for e in valid_events(3_000, users=200, seed=5)]
    old = [s for i, e in enumerate(events[:2_000]) for s in stream.feed_event(e, i, now_ms - 3_600_000)]
    fresh = [s for i, e in enumerate(events[2_000:], 2_000) for s in stream.feed_event(e, i, now_ms + 600_000)]
    producer = KafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=10)
    for value in old + fresh:
        producer.send(settings.samples_topic, value=value)
    producer.flush()
    producer.close()
    learnable = sum(1 for v in fresh if (s := decode(v)).task == "search" or s.label == 1)

    port = free_port()
    trainer = Child("train", settings, tmp_path / "shed.log", trainer_metrics_port=port,
                    checkpoint_dir=tmp_path / "ckpt", batch_size=128, max_wait_s=0.5, max_staleness_s=60,
                    n_items=4096, n_users=512, n_words=1024)
    try:
        wait_for(port, trainer, "unisar_train_samples_total", learnable, timeout_s=240)
        time.sleep(1.0)
        by_reason = {labels["reason"]: value for name, labels, value in scrape_samples(port)
                     if name == "unisar_train_samples_skipped_total"}
        assert by_reason.get("stale") == len(old)
        trained = sum(value for name, _l, value in scrape_samples(port) if name == "unisar_train_samples_total")
        assert trained == learnable
    finally:
        assert trainer.stop() == 0
    state = CheckpointDir(tmp_path / "ckpt").load_latest()
    assert sum(state["offsets"].values()) == len(old) + len(fresh)  # the shed backlog is consumed too
