"""Typed settings, read once at the edge (CLI) and passed down.

Each component reads a small group of settings: the Kafka connection (`KafkaSettings`), the
topic names and partitions (`TopicSettings`), the state store (`StoreSettings`), the /metrics
bind address (`MetricsSettings`), the stream worker (`WorkerSettings`), the continual trainer
(`TrainerSettings`), its scale-out (`ScaleOutSettings`) and the ranking service
(`ServeSettings`). `Settings` is all of them at once:
it inherits every group, so it keeps flat attribute access (`settings.brokers`) and can be
passed wherever a function asks for one group (`def f(kafka: KafkaSettings)`); `view(Group)`
cuts out one group's values as that group's own object.

Every field comes from the environment with the prefix UNISAR_ (UNISAR_BROKERS,
UNISAR_STATE_DIR, ...), whichever group it sits in. The CLI makes a flag of every field a
command reads (ops/commands/_common.add_settings_flags: `--name-with-dashes`, plus the
aliases named in `flags`); flags override the environment, the environment overrides the
defaults below.
"""
from __future__ import annotations

from typing import ClassVar, Literal, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 19092
ENV_PREFIX = "UNISAR_"

G = TypeVar("G", bound="SettingsGroup")


def cli(*flags: str, metavar: str | None = None, default: str | None = None, hidden: bool = False) -> dict:
    """How a field appears on the command line: extra flag names (older, shorter spellings
    kept working), the placeholder shown in --help, the default as --help words it, or
    `hidden` (environment only)."""
    out: dict = {"flags": list(flags)}
    if metavar:
        out["metavar"] = metavar
    if default:
        out["default"] = default
    if hidden:
        out["hidden"] = True
    return out


class SettingsGroup(BaseSettings):
    """Base of the groups: one prefix for all, immutable once read."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)
    title: ClassVar[str] = "settings"


class KafkaSettings(SettingsGroup):
    """How to reach the Kafka cluster (the embedded broker by default; SASL/TLS for a real one)."""

    title: ClassVar[str] = "kafka connection"

    brokers: str = Field(f"127.0.0.1:{DEFAULT_PORT}", description="Kafka bootstrap servers, comma-separated "
                         "(the default is where `unisar broker` listens)",
                         json_schema_extra=cli(metavar="HOST:PORT[,...]"))
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how the Kafka clients talk to the brokers")
    sasl_mechanism: str | None = Field(None, description="SASL mechanism, e.g. PLAIN or SCRAM-SHA-256 (the password "
                                       "comes from the environment only: UNISAR_SASL_PASSWORD)")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: str | None = Field(None, repr=False, description="SASL password (environment only: a flag would "
                                      "show in the process list)", json_schema_extra=cli(hidden=True))
    ssl_cafile: str | None = Field(None, description="CA bundle (PEM) that verifies the brokers' TLS certificates",
                                   json_schema_extra=cli(metavar="FILE"))

    def kafka_common(self) -> dict:
        """Connection settings shared by aiokafka and kafka-python clients."""
        out: dict = {"bootstrap_servers": self.brokers.split(","), "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            out.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return out


class TopicSettings(SettingsGroup):
    """The project's topics; created with these names and partitions when missing."""

    title: ClassVar[str] = "topics"

    events_topic: str = Field("sar.events", description="raw events (event v1, key = user)",
                              json_schema_extra=cli(metavar="TOPIC"))
    samples_topic: str = Field("sar.samples", description="training samples, from the workers to the trainers",
                               json_schema_extra=cli(metavar="TOPIC"))
    dlq_topic: str = Field("sar.events.dlq", description="dead letters: bad events with the reason",
                           json_schema_extra=cli(metavar="TOPIC"))
    items_topic: str = Field("sar.items", description="the catalogue (catalogue v1, key = item, or user:<user> for a "
                             "profile; compacted): item features and user profiles the trainers join by id",
                             json_schema_extra=cli(metavar="TOPIC"))
    changelog_topic: str = Field("sar.histories.changelog", description="compacted changelog of the per-user "
                                 "histories (a worker restores its state from it)",
                                 json_schema_extra=cli(metavar="TOPIC"))
    # Fixed up front: a user's history lives on the partition its key hashes to.
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the events, samples and changelog "
                            "topics when they are created (fixed up front: faust cannot re-partition)",
                            json_schema_extra=cli(metavar="N"))


class StoreSettings(SettingsGroup):
    """The RocksDB store of the per-user histories."""

    title: ClassVar[str] = "state store"

    state_dir: str = Field("./state-data", description="RocksDB directory of the per-user histories (one "
                           "writing process at a time)", json_schema_extra=cli(metavar="DIR"))
    state_memory_mb: int = Field(64, ge=8, description="RocksDB memory budget in MiB: block cache, with index and "
                                 "filter blocks and memtables charged to it", json_schema_extra=cli(metavar="MB"))


class MetricsSettings(SettingsGroup):
    """Where the Prometheus /metrics servers listen."""

    title: ClassVar[str] = "metrics"

    metrics_addr: str = Field("127.0.0.1", description="address the /metrics servers bind (0.0.0.0: all)",
                              json_schema_extra=cli(metavar="ADDR"))


class WorkerSettings(SettingsGroup):
    """The stream worker: events -> histories -> samples."""

    title: ClassVar[str] = "worker"

    group: str = Field("unisar-worker", description="the workers' Kafka consumer group (the faust app id "
                       "for --engine faust)", json_schema_extra=cli(metavar="GROUP"))
    engine: Literal["aiokafka", "faust"] = Field(
        "aiokafka", description="aiokafka: batch fetch and produce, the fastest; faust: a faust-streaming app "
        "with a changelog-backed Table and standby replicas (README, 'Worker engines'); every worker of one "
        "group must run the same engine", json_schema_extra=cli(metavar="ENGINE"))
    metrics_port: int = Field(9108, ge=0, le=65535, description="the worker's /metrics port (0: no /metrics server)",
                              json_schema_extra=cli(metavar="PORT"))
    max_rec: int = Field(30, ge=1, le=255, description="rec behaviours kept in each user's history",
                         json_schema_extra=cli(metavar="N"))
    max_search: int = Field(30, ge=1, le=255, description="search behaviours kept in each user's history",
                            json_schema_extra=cli(metavar="N"))
    max_clicks: int = Field(5, ge=1, le=255, description="clicked items kept per search behaviour",
                            json_schema_extra=cli(metavar="N"))
    commit_interval_s: float = Field(1.0, gt=0, description="flush state, samples and offsets this often, in seconds",
                                     json_schema_extra=cli("--commit-interval", metavar="S"))
    max_poll_records: int = Field(5000, ge=1, description="records taken from Kafka per poll at most",
                                  json_schema_extra=cli(metavar="N"))


class TrainerSettings(SettingsGroup):
    """The continual trainer: samples -> test-then-train -> checkpoints, offline evaluation."""

    title: ClassVar[str] = "trainer"

    trainer_group: str = Field("unisar-trainer", description="the trainers' Kafka consumer group",
                               json_schema_extra=cli(metavar="GROUP"))
    model: str = Field("unisar", description="model of the zoo: unisar, unifiedssr, user, sasrec or popularity "
                       "(model.registry); a resumed checkpoint must hold the same model",
                       json_schema_extra=cli(metavar="NAME"))
    models: str | None = Field(None, description="several models on the same stream, side by side: ARCH[:POLICY],... "
                               "(policies continual, frozen, periodic), the first the champion; e.g. "
                               "unisar,unisar:frozen,unisar:periodic (README, 'Models side by side')",
                               json_schema_extra=cli(metavar="SPECS", default="none, --model alone"))
    frozen_after: int = Field(20_000, ge=1, description="a frozen model stops learning after this many samples",
                              json_schema_extra=cli(metavar="N"))
    frozen_from: str | None = Field(None, description="a checkpoint file (e.g. unisar fit's) the frozen model starts "
                                    "from, never learning; without it, it learns the first --frozen-after samples",
                                    json_schema_extra=cli(metavar="CKPT", default="none"))
    retrain_every: int = Field(20_000, ge=1, description="a periodic model is retrained from scratch every N samples "
                               "(learning continually until the first)", json_schema_extra=cli(metavar="N"))
    retrain_window: int = Field(40_000, ge=1, description="the trailing samples a periodic retrain learns from",
                                json_schema_extra=cli(metavar="N"))
    retrain_epochs: int = Field(2, ge=1, description="passes over the trailing window per periodic retrain",
                                json_schema_extra=cli(metavar="N"))
    retrain_lag: int | None = Field(None, ge=0, description="samples after a periodic retrain starts at which its "
                                    "model is swapped in, the trainer waiting for it there if need be",
                                    json_schema_extra=cli(metavar="N", default="none, whenever it is ready"))
    ledger: str | None = Field(None, description="append each scored batch's per-model HR@10/NDCG@10 to this JSON-lines "
                               "file (read by unisar compare)", json_schema_extra=cli(metavar="FILE", default="none"))
    exposures: bool = Field(False, description="train on rec exposures without a click as labelled negatives "
                            "(README, 'Rec exposures')", json_schema_extra=cli(metavar="{true,false}"))
    train_precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="precision of the training forward pass (auto: bf16 autocast where the CPU has bf16 "
        "instructions or on a CUDA device with bf16, else fp32; weights and losses stay fp32)",
        json_schema_extra=cli(metavar="{auto,bf16,fp32}"))
    batch_size: int = Field(1024, ge=1, description="samples per test-then-train step",
                            json_schema_extra=cli(metavar="N"))
    max_wait_s: float = Field(2.0, gt=0, description="train on a partial batch after this many seconds",
                              json_schema_extra=cli("--max-wait", metavar="S"))
    checkpoint_dir: str = Field("./checkpoints", description="checkpoint directory; the trainer resumes from "
                                "the newest checkpoint in it", json_schema_extra=cli(metavar="DIR"))
    checkpoint_every_steps: int = Field(50, ge=1, description="checkpoint every N steps",
                                        json_schema_extra=cli("--checkpoint-every", metavar="N"))
    checkpoint_every_s: float = Field(60.0, gt=0, description="and at least every S seconds",
                                      json_schema_extra=cli(metavar="S"))
    keep_checkpoints: int = Field(3, ge=1, description="newest checkpoints kept on disk",
                                  json_schema_extra=cli("--keep", metavar="N"))
    score_share: float = Field(0.25, gt=0, le=1, description="share of samples test-then-train scores before "
                               "learning them (chosen by event id; every sample is learnt): 0.25 keeps the "
                               "window's HR@10 standard error under 0.01 at the default window",
                               json_schema_extra=cli(metavar="S"))
    window: int = Field(5000, ge=1, description="rows in the prequential sliding window",
                        json_schema_extra=cli(metavar="N"))
    trainer_metrics_port: int = Field(9109, ge=0, le=65535, description="the trainer's /metrics port (0: no "
                                      "/metrics server)", json_schema_extra=cli("--metrics-port", metavar="PORT"))
    heldout: str | None = Field(None, description="event file (.jsonl, .jsonl.gz, .parquet) whose latest samples are the offline evaluation set",
                                json_schema_extra=cli(metavar="FILE", default="none, no offline evaluation"))
    heldout_last: float = Field(0.1, gt=0, lt=1, description="the latest fraction of --heldout's samples in event "
                                "time, held out for evaluation", json_schema_extra=cli(metavar="F"))
    offline_every_steps: int = Field(100, ge=1, description="steps between offline evaluations",
                                     json_schema_extra=cli("--offline-every", metavar="N"))
    dedup_window: int = Field(1 << 20, ge=1, description="event ids remembered to drop repeated samples",
                              json_schema_extra=cli(metavar="N"))
    max_staleness_s: float | None = Field(None, gt=0, description="shed samples ingested more than S seconds ago, "
                                          "counted in unisar_train_samples_skipped_total{reason=\"stale\"}",
                                          json_schema_extra=cli("--max-staleness", metavar="S",
                                                                default="none, train on every sample"))
    n_users: int = Field(1 << 15, ge=2, description="rows of the user id table",
                         json_schema_extra=cli("--users", metavar="N"))
    n_items: int = Field(1 << 18, ge=2, description="rows of the item id table",
                         json_schema_extra=cli("--items", metavar="N"))
    n_words: int = Field(1 << 17, ge=2, description="rows of the word id table",
                         json_schema_extra=cli("--words", metavar="N"))
    seed: int = Field(0, description="seed of the model's initialisation and sampling",
                      json_schema_extra=cli(metavar="N"))
    device: str = Field("cpu", description="torch device: cpu, cuda or cuda:N",
                        json_schema_extra=cli(metavar="DEVICE"))


class ScaleOutSettings(SettingsGroup):
    """W trainer processes (the same settings otherwise) share the samples partitions: rank R
    consumes the partitions p with p % W == R; every step averages the ranks' gradients
    (torch.distributed, gloo). Rank 0 loads and writes the checkpoints and runs the offline
    evaluation; give each rank its own --metrics-port."""

    title: ClassVar[str] = "scale-out"

    world_size: int = Field(1, ge=1, le=1024, description="trainer processes sharing the samples partitions",
                            json_schema_extra=cli(metavar="W"))
    rank: int = Field(0, ge=0, description="this trainer's rank, 0..W-1 (rank 0 checkpoints)",
                      json_schema_extra=cli(metavar="R"))
    dist_addr: str = Field("127.0.0.1:29500", description="HOST:PORT of rank 0's rendezvous, the same for every rank",
                           json_schema_extra=cli(metavar="HOST:PORT"))
    dist_timeout_s: float = Field(300.0, gt=0, description="seconds to wait for the other ranks at start-up and in "
                                  "each collective", json_schema_extra=cli("--dist-timeout", metavar="S"))


class ServeSettings(SettingsGroup):
    """`unisar serve`: rankings over HTTP from the newest checkpoint and the changelog's histories."""

    title: ClassVar[str] = "serving"

    serve_host: str = Field("127.0.0.1", description="address the service binds (loopback: only this machine; "
                            "0.0.0.0: every interface, set a token first)", json_schema_extra=cli("--host", metavar="ADDR"))
    serve_port: int = Field(8000, ge=0, le=65535, description="the service's HTTP port (0: any free one)",
                            json_schema_extra=cli("--port", metavar="PORT"))
    serve_state_dir: str = Field("./serve-state", description="RocksDB directory of the service's own view of the "
                                 "histories (restored from the changelog, kept across restarts)",
                                 json_schema_extra=cli(metavar="DIR"))
    # the same setting (and UNISAR_CHECKPOINT_DIR) as the trainer's: the service reads what it writes
    checkpoint_dir: str = Field("./checkpoints", description="the trainer's checkpoint directory; the newest "
                                "complete checkpoint in it is served", json_schema_extra=cli(metavar="DIR"))
    check_interval_s: float = Field(5.0, gt=0, description="look for a newer checkpoint this often, in seconds",
                                    json_schema_extra=cli("--check-interval", metavar="S"))
    max_candidates: int = Field(1000, ge=1, le=100_000, description="candidate items one /v1/rank request may send",
                                json_schema_extra=cli(metavar="N"))
    pool_size: int = Field(500, ge=1, le=100_000, description="recently popular items kept as /v1/recommend's "
                           "candidates", json_schema_extra=cli(metavar="N"))
    pool_warmup: int = Field(20_000, ge=0, description="events read back from the end of the events topic at start, "
                             "to fill the candidate pool", json_schema_extra=cli(metavar="N"))
    batch_max: int = Field(64, ge=1, le=4096, description="requests ranked together in one forward pass at most",
                           json_schema_extra=cli(metavar="N"))
    batch_wait_ms: float = Field(2.0, ge=0, description="how long a request waits for others to share its forward "
                                 "pass, in milliseconds", json_schema_extra=cli(metavar="MS"))
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="inference precision (auto: bf16 where "
                                                       "the CPU has bf16 instructions or on CUDA, else fp32)")
    inference_threads: int = Field(0, ge=0, le=1024, description="torch threads of the forward pass (0: one less "
                                   "than the CPUs, at least 1: the HTTP loop keeps a core)",
                                   json_schema_extra=cli(metavar="N"))
    serve_token: str | None = Field(None, repr=False, description="bearer token every endpoint but /health requires "
                                    "(environment only: UNISAR_SERVE_TOKEN)", json_schema_extra=cli(hidden=True))
    history_endpoint: bool = Field(False, description="serve GET /v1/users/{user}/history (personal data: off "
                                   "unless enabled)", json_schema_extra=cli(metavar="{true,false}"))
    inspect_page: bool = Field(False, description="serve the inspection page at / (personal data: off unless "
                               "enabled)", json_schema_extra=cli(metavar="{true,false}"))


GROUPS: tuple[type[SettingsGroup], ...] = (KafkaSettings, TopicSettings, StoreSettings, MetricsSettings,
                                           WorkerSettings, TrainerSettings, ScaleOutSettings,
                                           ServeSettings)


class Settings(ScaleOutSettings, TrainerSettings, WorkerSettings, MetricsSettings, StoreSettings, TopicSettings,
               KafkaSettings, ServeSettings):
    """Every group at once, with flat fields (the demo passes all of them to its children)."""

    title: ClassVar[str] = "settings"

    def view(self, group: type[G]) -> G:
        """This object's values of one group, as that group's own (typed, frozen) object."""
        return group.model_construct(**{name: getattr(self, name) for name in group.model_fields})

    @property
    def kafka(self) -> KafkaSettings:
        return self.view(KafkaSettings)

    @property
    def topics(self) -> TopicSettings:
        return self.view(TopicSettings)

    @property
    def store(self) -> StoreSettings:
        return self.view(StoreSettings)

    @property
    def worker(self) -> WorkerSettings:
        return self.view(WorkerSettings)

    @property
    def trainer(self) -> TrainerSettings:
        return self.view(TrainerSettings)

    @property
    def scale_out(self) -> ScaleOutSettings:
        return self.view(ScaleOutSettings)
