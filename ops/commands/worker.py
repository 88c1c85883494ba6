"""`unisar worker`: the stream worker (events -> histories in RocksDB -> samples)."""
from __future__ import annotations

import argparse

from ops.commands._common import add_kafka_flags


def register(sub) -> None:
    p = sub.add_parser("worker", help="run a stream worker: events -> RocksDB histories -> training samples",
                       description="Consume the events topic in a consumer group, keep every user's history "
                                   "in RocksDB, emit one training sample per rec event and per search with "
                                   "clicks, dead-letter bad events, serve Prometheus /metrics. Ctrl-C stops "
                                   "it cleanly (final commit).")
    p.add_argument("--state-dir", help="RocksDB directory (env UNISAR_STATE_DIR, default ./state-data)")
    p.add_argument("--state-memory-mb", type=int, help="RocksDB memory budget in MiB: block cache, index and "
                   "filter blocks and memtables together (env UNISAR_STATE_MEMORY_MB, default 64)")
    p.add_argument("--group", help="consumer group (default unisar-worker)")
    p.add_argument("--metrics-port", type=int, help="port for /metrics (default 9108; 0 = off)")
    p.add_argument("--commit-interval", type=float, dest="commit_interval_s",
                   help="seconds between commits (default 1.0)")
    p.add_argument("--max-rec", type=int, help="rec behaviours kept per user (default 30)")
    p.add_argument("--max-search", type=int, help="search behaviours kept per user (default 30)")
    add_kafka_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ops.commands._common import fail, run_until_signalled, settings_from
    from ops.metrics import WorkerMetrics
    from ops.runtime import return_large_blocks
    from state.store import RocksHistoryStore, StoreOptions
    from stream.kafka import ensure_topics
    from stream.ingest.worker import StreamWorker

    settings = settings_from(args, state_dir=args.state_dir, state_memory_mb=args.state_memory_mb,
                             group=args.group, metrics_port=args.metrics_port,
                             commit_interval_s=args.commit_interval_s, max_rec=args.max_rec,
                             max_search=args.max_search)
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
        await ensure_topics(settings)
        await StreamWorker(settings, store, metrics).run(stop)

    try:
        run_until_signalled(main)
    finally:
        store.close()
    return 0
