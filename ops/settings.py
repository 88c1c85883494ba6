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
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the /metrics server")

    max_rec: int = Field(30, ge=1, le=255)
    max_search: int = Field(30, ge=1, le=255)
    max_clicks: int = Field(5, ge=1, le=255)

    commit_interval_s: float = Field(1.0, gt=0, description="flush state, samples and offsets this often")
    max_poll_records: int = Field(5000, ge=1)

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
