"""Every Prometheus metric, declared once. Prefix unisar_, seconds for time, _total for
counters, bounded labels only (type, outcome, stage, partition, model, task, term, k; model
names come from the configuration, `--models`) - never a user, item or query id. Pass `registry=` for a fresh registry in tests."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Served:
    registry: CollectorRegistry

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on `port` (0 picks a free one); returns the bound port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server.server_port


EVENT_KINDS = ("rec", "search")
DLQ_STAGES = ("decode", "validate", "route", "step")  # stream.contract.events.Rejection.stage


class WorkerMetrics(_Served):
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.events = Counter(
            "unisar_events_total", "Events read from the events topic, by type and outcome "
            "(applied, duplicate: a redelivery already applied, dead_letter, forwarded: sent on to "
            "its home partition, where it is counted again)",
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
        self.partitions = Gauge(
            "unisar_worker_partitions_assigned", "Events partitions this worker owns (0: not yet assigned, "
            "or waiting for a rebalance)", registry=registry)
        self.restored = Counter(
            "unisar_changelog_restored_total", "Histories restored from the changelog on partition "
            "assignment", registry=registry)
        # Create the bounded label sets up front, so a worker that has read nothing yet, or
        # refused nothing, exposes zeros (dashboards and the job selector show them) rather
        # than no series at all.
        for kind in EVENT_KINDS:
            for outcome in ("applied", "duplicate", "forwarded"):
                self.events.labels(kind, outcome)
            self.samples.labels(kind)
        self.events.labels("invalid", "dead_letter")
        for stage in DLQ_STAGES:
            self.dead_letters.labels(stage)

    def count_step(self, counts: dict[tuple[str, str], int]) -> None:
        """Add one step's event counts, {(type, outcome): n}; outcome "sample" counts samples."""
        for (kind, outcome), n in counts.items():
            if outcome == "sample":
                self.samples.labels(kind).inc(n)
            else:
                self.events.labels(kind, outcome).inc(n)

    def count_dead_letter(self, stage: str) -> None:
        self.events.labels("invalid", "dead_letter").inc()
        self.dead_letters.labels(stage).inc()



TASKS = ("rec", "search")
LOSS_TERMS = ("click", "rel", "align", "total")
MODES = ("prequential", "offline")
ID_TABLES = ("users", "items", "words")
SKIP_REASONS = ("duplicate", "stale", "undecodable", "unlearnable", "exposure")
FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 20, 30, 60, 120, 300)


class TrainerMetrics(_Served):
    """The continual trainer's metrics. Quality is exported as gauges of the latest window
    (prequential: test-then-train over a sliding window; offline: the held-out protocol)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.loss = Gauge("unisar_train_loss", "Latest value of each joint loss term per task "
                          "(click = BCE, rel = L_Rel, align = L_Align, total)", ["model", "task", "term"], registry=registry)
        self.hr = Gauge("unisar_hr", "Hit ratio at k per model, task and mode", ["model", "task", "k", "mode"],
                        registry=registry)
        self.ndcg = Gauge("unisar_ndcg", "NDCG at k per model, task and mode", ["model", "task", "k", "mode"],
                          registry=registry)
        self.ndcg_gain = Gauge("unisar_challenger_ndcg_gain", "A challenger's prequential NDCG@10 minus the "
                               "champion's, on the same rows and candidates (above 0: the challenger leads)",
                               ["model", "task"], registry=registry)
        self.cold_share = Gauge("unisar_cold_target_share", "Share of the latest window's (prequential) or "
                                "held-out set's (offline) true items the model had never seen: scored through "
                                "its unknown-item vector", ["model", "task", "mode"], registry=registry)
        self.hr_targets = Gauge("unisar_hr_by_target", "Hit ratio at k on warm (seen in training) and cold "
                                "(never seen) true items apart", ["model", "task", "k", "mode", "targets"], registry=registry)
        self.ndcg_targets = Gauge("unisar_ndcg_by_target", "NDCG at k on warm and cold true items apart",
                                  ["model", "task", "k", "mode", "targets"], registry=registry)
        self.nonfinite_rows = Gauge("unisar_nonfinite_score_rows", "Rows of the latest window (prequential) or "
                                    "held-out set (offline) with a NaN or infinite score: they count against the "
                                    "model (ranked last); above 0 is a model bug", ["model", "task", "mode"], registry=registry)
        self.samples = Counter("unisar_train_samples_total", "Samples trained on, by model and task", ["model", "task"],
                               registry=registry)
        self.steps = Counter("unisar_train_steps_total", "Optimiser steps taken by this process", registry=registry)
        self.model_step = Gauge("unisar_model_step", "Each model's step count (continues across restarts)",
                                ["model"], registry=registry)
        self.batch_size = Gauge("unisar_train_batch_size", "Samples in the latest training batch", registry=registry)
        self.step_seconds = Histogram("unisar_train_step_seconds", "Seconds one test-then-train step takes",
                                      buckets=LATENCY_BUCKETS, registry=registry)
        self.freshness = Histogram("unisar_freshness_seconds", "Seconds from an event's ingest by the stream "
                                   "worker to the training step that learned from it",
                                   buckets=FRESHNESS_BUCKETS, registry=registry)
        self.table_rows = Gauge("unisar_embedding_rows", "Rows of each embedding id table", ["table"],
                                registry=registry)
        self.table_used = Gauge("unisar_embedding_rows_used", "Rows holding an id", ["table"], registry=registry)
        self.evictions = Counter("unisar_embedding_evictions_total", "Rows recycled for new ids", ["table"],
                                 registry=registry)
        self.catalogue = Counter("unisar_catalogue_records_total", "Item catalogue records read by the trainer, "
                                 "by outcome (applied, dead_letter)", ["outcome"], registry=registry)
        self.catalogue_items = Gauge("unisar_catalogue_items", "Items the trainer's local catalogue holds",
                                     registry=registry)
        for outcome in ("applied", "dead_letter"):  # at 0 from the start: no record yet is a value
            self.catalogue.labels(outcome)
        self.lag = Gauge("unisar_trainer_consumer_lag", "Samples not yet trained on (read and queued ones "
                         "included), per samples partition",
                         ["partition"], registry=registry)
        self.nonfinite = Counter("unisar_train_nonfinite_loss_total", "Steps whose loss was NaN or infinite "
                                 "(skipped)", ["model"], registry=registry)
        self.skipped = Counter("unisar_train_samples_skipped_total", "Samples consumed but not trained on, by "
                               "reason (duplicate: an at-least-once repeat of a trained event; stale: older than "
                               "max_staleness_s; undecodable; unlearnable: cannot be collated; exposure: a rec "
                               "exposure without a click, which no loss uses)", ["reason"], registry=registry)
        self.checkpoints = Counter("unisar_checkpoints_total", "Checkpoints written", registry=registry)
        self.last_checkpoint = Gauge("unisar_last_checkpoint_timestamp_seconds", "Unix time of the newest "
                                     "checkpoint", registry=registry)
        self.offline_eval_seconds = Histogram("unisar_offline_eval_seconds", "Seconds one offline evaluation "
                                              "takes", buckets=LATENCY_BUCKETS, registry=registry)
        self.last_offline_eval = Gauge("unisar_last_offline_eval_timestamp_seconds", "Unix time the newest "
                                       "offline evaluation finished", registry=registry)
        self.offline_eval_step = Gauge("unisar_offline_eval_step", "Model step the newest offline figures "
                                       "belong to (-1: none yet)", registry=registry)
        self.offline_eval_step.set(-1)
        # Counters with labels expose nothing until a child exists: create the bounded ones up
        # front, so a scrape shows them at 0 (no eviction yet is a value, not a missing series).
        for table in ID_TABLES:
            self.evictions.labels(table)
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)

    def name_models(self, models: list[str]) -> None:
        """Create each model's counters at 0, so a scrape shows them before the first step."""
        for model in models:
            self.nonfinite.labels(model)
            for task in TASKS:
                self.samples.labels(model, task)


class RankMetrics:
    """A trainer rank's place in its process group (`unisar train --world-size W`), next to
    its TrainerMetrics in the same registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.rank = Gauge("unisar_trainer_rank", "This trainer's rank in its process group", registry=registry)
        self.world_size = Gauge("unisar_trainer_world_size", "Trainer ranks in the process group",
                                registry=registry)
        self.rounds = Counter("unisar_trainer_rounds_total", "Lockstep rounds, by outcome (step; idle: no rank had "
                              "samples to learn from)", ["outcome"], registry=registry)
        self.digest = Gauge("unisar_trainer_state_digest", "Hash (52 bits) of the model, optimisers and id tables "
                            "at the latest checkpoint: equal on every rank", registry=registry)
        self.divergences = Counter("unisar_trainer_divergences_total", "Checkpoints at which the ranks' states "
                                   "differed (all then took rank 0's)", registry=registry)
        for outcome in ("step", "idle"):
            self.rounds.labels(outcome)


SERVE_ENDPOINTS = ("rank", "recommend", "history")
SERVE_OUTCOMES = ("ok", "bad_request", "unauthorized", "not_ready", "error")
SERVE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)


class ServeMetrics:
    """`unisar serve`: request latency and outcomes, the model served, the history view's lag.
    The model's age is computed at scrape time (`model_age.set_function`)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.latency = Histogram("unisar_serve_request_seconds", "Seconds from a ranking request's arrival to its "
                                 "answer, by endpoint", ["endpoint"], buckets=SERVE_BUCKETS, registry=registry)
        self.requests = Counter("unisar_serve_requests_total", "Requests by endpoint and outcome (bad_request: 422; "
                                "unauthorized: 401; not_ready: 503, no model yet)", ["endpoint", "outcome"],
                                registry=registry)
        self.batch_size = Histogram("unisar_serve_batch_requests", "Requests ranked together in one forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=registry)
        self.model_step = Gauge("unisar_serve_model_step", "Step of the model being served (-1: none yet)",
                                registry=registry)
        self.model_step.set(-1)
        self.model_age = Gauge("unisar_serve_model_age_seconds", "Seconds since the served checkpoint was written",
                               registry=registry)
        self.swaps = Counter("unisar_serve_model_swaps_total", "Newer checkpoints swapped in", registry=registry)
        self.refused = Counter("unisar_serve_checkpoints_refused_total", "Checkpoints that did not load (corrupt, "
                               "partial or of another format); the model before them kept serving",
                               registry=registry)
        self.history_lag = Gauge("unisar_serve_history_lag_records", "Changelog records not yet in the service's "
                                 "history view, over all partitions", registry=registry)
        self.history_delay = Histogram("unisar_serve_history_apply_seconds", "Seconds from a history change's "
                                       "changelog timestamp until the service's view holds it",
                                       buckets=FRESHNESS_BUCKETS, registry=registry)
        self.users = Gauge("unisar_serve_users", "Users in the service's history view (RocksDB estimate)",
                           registry=registry)
        for endpoint in SERVE_ENDPOINTS:
            for outcome in SERVE_OUTCOMES:
                self.requests.labels(endpoint, outcome)


def fresh_registry() -> CollectorRegistry:
    return CollectorRegistry()


def scrape_samples(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> list[tuple[str, dict, float]]:
    """Read a /metrics endpoint: (sample name, labels, value) for every sample."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def scrape(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> dict[str, float]:
    """{sample name: value summed over its labels}, e.g. {"unisar_events_total": 10200.0}.
    For demos and tests; Prometheus does the rest."""
    totals: dict[str, float] = {}
    for name, _labels, value in scrape_samples(port, host, timeout_s):
        totals[name] = totals.get(name, 0.0) + value
    return totals
