"""Shared fixtures: one embedded broker per test session (the same code as `unisar broker`),
fresh topic names per test, and a way to run `unisar worker` as a real process."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from cores import THREADS

# Before torch is imported here or in a child process (`unisar demo`, `unisar train`).
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

from ops.broker import EmbeddedBroker, free_port
from ops.metrics import scrape
from ops.processes import Child
from ops.settings import Settings


def pytest_collection_modifyitems(items) -> None:
    """A test that reaches the broker (through `broker`, `settings` or `worker_factory`) is an
    integration test wherever it lives: `make check` leaves out every one of them."""
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture
def settings(broker, tmp_path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        brokers=broker.bootstrap, events_topic=f"ev-{tag}", samples_topic=f"sm-{tag}", dlq_topic=f"dlq-{tag}",
        changelog_topic=f"cl-{tag}", items_topic=f"it-{tag}", group=f"g-{tag}", state_dir=str(tmp_path / "state"),
        partitions=4,
        metrics_port=0,
    )


class WorkerProcess(Child):
    """`unisar worker` in its own process, serving /metrics on a port of its own."""

    def __init__(self, settings: Settings, log_path: Path, **overrides) -> None:
        self.metrics_port = free_port()
        super().__init__("worker", settings, log_path, metrics_port=self.metrics_port, **overrides)

    def wait_assigned(self, timeout_s: float = 60) -> None:
        """Block until the worker owns events partitions. By then its SIGTERM handler is in place:
        a SIGTERM sent earlier, while it still imports, kills it with the default action."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.alive(), f"worker exited with {self.proc.returncode} before it was assigned partitions"
            try:
                if scrape(self.metrics_port, timeout_s=2).get("unisar_worker_partitions_assigned", 0) > 0:
                    return
            except OSError:
                pass  # not serving yet
            assert time.monotonic() < deadline, f"worker not assigned partitions after {timeout_s} s"
            time.sleep(0.1)


@pytest.fixture
def worker_factory(tmp_path):
    started: list[WorkerProcess] = []

    def start(settings: Settings, **overrides) -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log", **overrides)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.kill()
