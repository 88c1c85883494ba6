"""`unisar worker`: the stream worker (events -> histories in RocksDB -> samples)."""
from __future__ import annotations

import argparse

from ops.commands._common import add_settings_flags
from ops.settings import KafkaSettings, MetricsSettings, StoreSettings, TopicSettings, WorkerSettings


def register(sub) -> None:
    p = sub.add_parser("worker", help="run a stream worker: events -> RocksDB histories -> training samples",
                       description="Consume the events topic in a consumer group, keep every user's history "
                                   "in RocksDB, emit one training sample per rec event and per search with "
                                   "clicks, dead-letter bad events, serve Prometheus /metrics. Ctrl-C stops "
                                   "it cleanly (final commit).")
    add_settings_flags(p, WorkerSettings, StoreSettings, MetricsSettings, KafkaSettings, TopicSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ops.commands._common import fail, require_broker, run_until_signalled, settings_from
    from ops.metrics import WorkerMetrics
    from ops.runtime import return_large_blocks
    from state.store import RocksHistoryStore, StoreOptions
    from stream.kafka import ensure_topics

    settings = settings_from(args)
    require_broker(settings)
    return_large_blocks()
    metrics = WorkerMetrics()
    if settings.metrics_port:
        try:
            port = metrics.serve(settings.metrics_port, settings.metrics_addr)
        except OSError as exc:
            fail(f"cannot serve /metrics on port {settings.metrics_port}: {exc.strerror}")
        logging.getLogger(__name__).info("metrics on http://127.0.0.1:%d/metrics", port)
    try:
        options = StoreOptions(memory_budget_bytes=settings.state_memory_mb << 20)
        store = RocksHistoryStore(settings.state_dir, options)
    except Exception as exc:  # rocksdict raises a plain Exception, e.g. for a locked directory
        fail(f"cannot open the RocksDB directory {settings.state_dir!r}: {exc}")

    async def main(stop) -> None:
        from stream.ingest.engines import EngineFailure, new_worker

        worker = new_worker(settings, store, metrics, await ensure_topics(settings))
        try:
            await worker.run(stop)
        except EngineFailure as exc:
            fail(str(exc), code=3)

    try:
        run_until_signalled(main)
    finally:
        store.close()
    return 0
