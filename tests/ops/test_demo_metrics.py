"""Issue 5's acceptance: while the demo runs, its metrics endpoints show every metric of
point 4 with live values: each joint loss term per task; HR@1/5/10 and NDCG@5/10 per task
and mode (prequential and offline); samples/s, steps, batch size, model step; the freshness
histogram; embedding-table occupancy and evictions; consumer lag (worker and trainer).

The demo runs as a user runs it (`unisar demo`, a subprocess with its own broker, worker and
trainer), small and rate-limited so it is still replaying while we scrape, with an early
offline evaluation (--offline-every 5). It is stopped with SIGINT (Ctrl-C) and must still
write its report and leave nothing running."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from model.metrics import HR_AT, NDCG_AT
from ops import metrics as m
from ops.broker import answers_kafka, free_port
from ops.metrics import scrape_samples

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = [str(p) for p in range(4)]  # the demo's topics: Settings().partitions

MODEL = "unisar"  # the demo's default model: the trainer's metrics carry it as their model label


def required_trainer() -> set[tuple[str, frozenset]]:
    want = set()
    for task in m.TASKS:
        want |= {("unisar_train_loss", frozenset({"model": MODEL, "task": task, "term": term}.items()))
                 for term in m.LOSS_TERMS}
        for mode in m.MODES:
            want |= {("unisar_hr", frozenset({"model": MODEL, "task": task, "k": str(k), "mode": mode}.items()))
                     for k in HR_AT}
            want |= {("unisar_ndcg", frozenset({"model": MODEL, "task": task, "k": str(k), "mode": mode}.items()))
                     for k in NDCG_AT}
        want.add(("unisar_train_samples_total", frozenset({"model": MODEL, "task": task}.items())))
    for table in m.ID_TABLES:
        for name in ("unisar_embedding_rows", "unisar_embedding_rows_used", "unisar_embedding_evictions_total"):
            want.add((name, frozenset({"table": table}.items())))
    want |= {("unisar_trainer_consumer_lag", frozenset({"partition": p}.items())) for p in PARTITIONS}
    for name in ("unisar_train_steps_total", "unisar_train_batch_size",
                 "unisar_freshness_seconds_count", "unisar_freshness_seconds_sum"):
        want.add((name, frozenset()))
    want.add(("unisar_model_step", frozenset({"model": MODEL}.items())))
    want |= {("unisar_freshness_seconds_bucket", frozenset({"le": le}.items()))
             for le in [str(float(b)) for b in m.FRESHNESS_BUCKETS] + ["+Inf"]}
    return want


def required_worker() -> set[tuple[str, frozenset]]:
    return {("unisar_consumer_lag", frozenset({"partition": p}.items())) for p in PARTITIONS}


def series(port: int) -> dict[tuple[str, frozenset], float]:
    return {(name, frozenset(labels.items())): value for name, labels, value in scrape_samples(port)}


def total(values: dict, name: str) -> float:
    return sum(v for (n, _), v in values.items() if n == name)


def test_demo_metrics_show_every_point_4_metric_with_live_values(tmp_path):
    out = tmp_path / "demo"
    worker_port, trainer_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "ops.cli", "demo", "--events", "10000", "--users", "300", "--batch-size", "128",
           "--rate", "250", "--offline-every", "5", "--duration", "150", "--no-live", "--out", str(out),
           "--worker-metrics-port", str(worker_port), "--trainer-metrics-port", str(trainer_port)]
    log_path = tmp_path / "demo.out"
    want_trainer, want_worker = required_trainer(), required_worker()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        first_worker = None
        deadline = time.monotonic() + 100
        while True:
            assert proc.poll() is None, f"the demo exited early:\n{log_path.read_text()[-3000:]}"
            try:
                worker, trainer = series(worker_port), series(trainer_port)
            except OSError:
                worker = trainer = None
            if worker is not None:
                if first_worker is None and total(worker, "unisar_events_total") > 0:
                    first_worker = worker
                missing = sorted((want_trainer - trainer.keys()) | (want_worker - worker.keys()), key=str)
                if not missing and first_worker is not None and trainer[("unisar_model_step", frozenset({"model": MODEL}.items()))] > 0:
                    break
            assert time.monotonic() < deadline, (
                f"after 100 s still missing: {missing if worker is not None else 'no /metrics answer'}\n"
                f"{log_path.read_text()[-2000:]}")
            time.sleep(1.0)

        time.sleep(3.0)
        worker_later, trainer_later = series(worker_port), series(trainer_port)
        assert proc.poll() is None, "the demo must still be running for the second scrape"

        # live: the counters and the model step moved between two scrapes while the demo ran
        for name in ("unisar_model_step", "unisar_train_steps_total", "unisar_train_samples_total",
                     "unisar_freshness_seconds_count"):
            assert total(trainer_later, name) > total(trainer, name), name
        assert total(worker_later, "unisar_events_total") > total(first_worker, "unisar_events_total")
        assert total(worker_later, "unisar_samples_total") > total(first_worker, "unisar_samples_total")

        # values a live system has, on every required series
        for (name, labels), value in trainer_later.items():
            if (name, labels) not in want_trainer:
                continue
            assert math.isfinite(value), (name, dict(labels), value)
            if name in ("unisar_hr", "unisar_ndcg"):
                assert 0.0 <= value <= 1.0, (name, dict(labels), value)
            elif name.endswith("_lag") or name == "unisar_embedding_evictions_total":
                assert value >= 0, (name, dict(labels), value)
        assert 0 < trainer_later[("unisar_train_batch_size", frozenset())] <= 128
        for table in m.ID_TABLES:
            key = frozenset({"table": table}.items())
            rows, used = trainer_later[("unisar_embedding_rows", key)], trainer_later[("unisar_embedding_rows_used", key)]
            assert rows > 0 and 0 < used <= rows, (table, rows, used)
        assert all(worker_later[k] >= 0 for k in want_worker)
        assert trainer_later[("unisar_freshness_seconds_sum", frozenset())] > 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops its children and writes its report
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    assert proc.returncode == 0, log_path.read_text()[-3000:]
    (run_dir,) = out.glob("run-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"rec", "search"} <= set(summary["quality"]) and "offline" in summary["quality"]["rec"]
    for pid in summary["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    host, port = summary["broker"].split(":")
    assert not answers_kafka(host, int(port))
