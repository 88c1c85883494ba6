"""The worker's engines by name: the one place that picks one (`unisar worker --engine`,
benchmarks/ingest.py). faust is imported only when asked for."""
from __future__ import annotations

from ops.metrics import WorkerMetrics
from ops.settings import Settings
from state.store import HistoryStore

ENGINES = ("aiokafka", "faust")


class EngineFailure(RuntimeError):
    """An engine cannot go on (the faust app crashed, or a partition stopped reading while
    events kept arriving): `unisar worker` exits 3 with the reason. A broker that does not
    answer is not this: the worker waits for it."""


def new_worker(settings: Settings, store: HistoryStore, metrics: WorkerMetrics, partitions: dict[str, int]):
    """The worker of `settings.engine`, ready to `run(stop)`. `partitions`: each topic's
    partition count (stream.kafka.ensure_topics)."""
    if settings.engine == "faust":
        from stream.ingest.faust_app import FaustWorker

        return FaustWorker(settings, store, metrics, partitions)
    from stream.ingest.worker import StreamWorker

    return StreamWorker(settings, store, metrics)
