"""`faust -A stream.ingest.faust_main worker -l info`: the faust engine under faust's own
worker command, for teams that run faust apps that way. Settings come from UNISAR_*
variables (as for every unisar command); /metrics is served on UNISAR_METRICS_PORT.
`unisar worker --engine faust` runs the same app and is the tested way."""
from __future__ import annotations

from ops.metrics import WorkerMetrics
from ops.settings import Settings
from state.store import RocksHistoryStore, StoreOptions
from stream.ingest.faust_app import FaustWorker
from stream.kafka import ensure_topics_sync

settings = Settings()
_metrics = WorkerMetrics()
if settings.metrics_port:
    _metrics.serve(settings.metrics_port, settings.metrics_addr)
_store = RocksHistoryStore(settings.state_dir, StoreOptions(memory_budget_bytes=settings.state_memory_mb << 20))
app = FaustWorker(settings, _store, _metrics, ensure_topics_sync(settings)).app
