"""Every Prometheus metric, declared once. Prefix unisar_, seconds for time, _total for
counters, bounded labels only (type, outcome, stage, partition, task, term, k) - never a
user, item or query id. Pass `registry=` for a fresh registry in tests."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.events = Counter(
            "unisar_events_total", "Events read from the events topic, by type and outcome "
            "(applied, duplicate: a redelivery already applied, dead_letter)",
            ["type", "outcome"], registry=registry)
        self.dead_letters = Counter(
            "unisar_dead_letters_total", "Events sent to the dead-letter topic, by failing stage",
            ["stage"], registry=registry)
        self.samples = Counter(
            "unisar_samples_total", "Training samples emitted, by task", ["task"], registry=registry)
        self.processing = Histogram(
            "unisar_event_processing_seconds", "Seconds from an event's Kafka timestamp until its "
            "state, sample and offset are committed", buckets=LATENCY_BUCKETS, registry=registry)
        self.commit = Histogram(
            "unisar_worker_commit_seconds", "Seconds one commit (flush samples and changelog, write "
            "RocksDB, commit offsets) takes", buckets=LATENCY_BUCKETS, registry=registry)
        self.users = Gauge(
            "unisar_users_stored", "Users with a stored history (RocksDB estimate)", registry=registry)
        self.lag = Gauge(
            "unisar_consumer_lag", "Events not yet read, per assigned events partition",
            ["partition"], registry=registry)
        self.restored = Counter(
            "unisar_changelog_restored_total", "Histories restored from the changelog on partition "
            "assignment", registry=registry)

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve /metrics on `port` (0 picks a free one); returns the bound port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server.server_port


def fresh_registry() -> CollectorRegistry:
    return CollectorRegistry()


def scrape(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> dict[str, float]:
    """Read a /metrics endpoint; returns {sample name: value summed over its labels}, e.g.
    {"unisar_events_total": 10200.0, ...}. For demos and tests; Prometheus does the rest."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals
