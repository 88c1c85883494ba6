"""One typed settings object, read once at the edge (CLI) and passed down.

Every field can come from the environment with the prefix UNISAR_ (UNISAR_BROKERS,
UNISAR_STATE_DIR, ...); command-line flags override the environment.
"""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 19092


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UNISAR_", frozen=True)

    brokers: str = Field(f"127.0.0.1:{DEFAULT_PORT}", description="Kafka bootstrap servers, comma-separated")
    # Passed through to the Kafka clients for a real cluster.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None

    events_topic: str = "sar.events"
    samples_topic: str = "sar.samples"
    dlq_topic: str = "sar.events.dlq"
    changelog_topic: str = "sar.histories.changelog"
    # Fixed up front: a user's history lives on the partition its key hashes to.
    partitions: int = Field(4, ge=1, le=1024)

    group: str = "unisar-worker"
    state_dir: str = "./state-data"
    state_memory_mb: int = Field(64, ge=8, description="RocksDB memory budget in MiB: block cache, with index and "
                                                       "filter blocks and memtables charged to it")
    metrics_addr: str = Field("127.0.0.1", description="address the /metrics servers bind (0.0.0.0: all)")
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the /metrics server")

    max_rec: int = Field(30, ge=1, le=255)
    max_search: int = Field(30, ge=1, le=255)
    max_clicks: int = Field(5, ge=1, le=255)

    commit_interval_s: float = Field(1.0, gt=0, description="flush state, samples and offsets this often")
    max_poll_records: int = Field(5000, ge=1)

    # ---- the continual trainer
    trainer_group: str = "unisar-trainer"
    model: str = "unisar"
    batch_size: int = Field(1024, ge=1, description="samples per test-then-train step")
    max_wait_s: float = Field(2.0, gt=0, description="train on a partial batch after this long")
    checkpoint_dir: str = "./checkpoints"
    checkpoint_every_steps: int = Field(50, ge=1)
    checkpoint_every_s: float = Field(60.0, gt=0)
    keep_checkpoints: int = Field(3, ge=1)
    window: int = Field(5000, ge=1, description="rows in the prequential sliding window")
    trainer_metrics_port: int = Field(9109, ge=0, le=65535)
    heldout: str | None = Field(None, description="time-ordered event file (JSONL) for the offline evaluation")
    heldout_last: float = Field(0.1, gt=0, lt=1, description="its trailing fraction held out for evaluation")
    offline_every_steps: int = Field(100, ge=1)
    dedup_window: int = Field(1 << 20, ge=1, description="event ids remembered to drop repeated samples")
    max_staleness_s: float | None = Field(None, gt=0, description="shed samples ingested longer ago (default: train on all)")
    n_users: int = Field(1 << 15, ge=2, description="rows of the user id table")
    n_items: int = Field(1 << 18, ge=2, description="rows of the item id table")
    n_words: int = Field(1 << 17, ge=2, description="rows of the word id table")
    seed: int = 0
    device: str = "cpu"
    # ---- scale-out: trainer ranks in one torch.distributed (gloo) process group
    world_size: int = Field(1, ge=1, le=1024, description="trainer processes sharing the samples partitions")
    rank: int = Field(0, ge=0, description="this trainer's rank, 0..world_size-1 (rank 0 checkpoints)")
    dist_addr: str = Field("127.0.0.1:29500", description="HOST:PORT of rank 0's rendezvous")
    dist_timeout_s: float = Field(300.0, gt=0, description="rendezvous and collective timeout")

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
