"""Settings, from the environment (``SAGAWORKS_*``) or a ``.env`` file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from readstore.db import WriteConcernOptions, redact_url


class Settings(BaseSettings):
    """Everything configurable. URLs are secrets: they print redacted."""

    model_config = SettingsConfigDict(env_prefix="SAGAWORKS_", env_file=".env", extra="ignore")

    #: RabbitMQ; unset means the in-process broker (the demo only).
    amqp_url: SecretStr | None = None
    #: MongoDB; unset means an embedded SecantusDB server started for the process.
    mongodb_url: SecretStr | None = None
    mongodb_db: str = "sagaworks"
    #: Write concern of every write (event store, saga state, dead letters, read models):
    #: ``"majority"`` or a number of members. With ``write_concern_journal`` a write is
    #: acknowledged only once it is in the journal on disk, so it survives a crash of the
    #: store. Lowering either trades that guarantee for throughput (README: Durability).
    write_concern_w: str = Field(default="majority", pattern=r"^(majority|[1-9][0-9]*)$")
    write_concern_journal: bool = True
    #: Where an embedded SecantusDB keeps its data (``:memory:``: nothing survives it). A
    #: file-backed one fsyncs its journal on every commit unless ``embedded_sync_on_commit``
    #: is off.
    embedded_storage_path: str = ":memory:"
    embedded_sync_on_commit: bool = True
    #: Declare command and saga queues as quorum queues (replicated in a RabbitMQ cluster).
    quorum_queues: bool = False
    #: Put before every queue name, so deployments (or tests) can share a virtual host.
    queue_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")

    max_retries: int = Field(default=8, ge=0)
    min_backoff_ms: int = Field(default=200, ge=0)
    max_backoff_ms: int = Field(default=30_000, ge=0)
    #: Largest message body accepted; larger ones are dead-lettered unread.
    max_message_bytes: int = Field(default=1024 * 1024, gt=0)
    #: Times a command re-reads and re-decides on a version conflict before a Dramatiq retry.
    concurrency_attempts: int = Field(default=5, ge=1)

    #: ``publish()`` waits out a broker outage this long before raising ``BrokerUnavailable``.
    publish_timeout_seconds: float = Field(default=30.0, ge=0)

    #: A commit undispatched for this long is re-sent by the relay.
    relay_grace_seconds: float = Field(default=5.0, ge=0)
    relay_interval_seconds: float = Field(default=1.0, gt=0)

    #: How long a projection's event that finds no other waiting waits for company before it
    #: is applied alone (one store round trip for both; the read model lags by as much).
    projection_linger_ms: float = Field(default=30.0, ge=0, le=1000)

    #: Every placed order starts an order-fulfilment saga (off: orders are confirmed upstream).
    fulfilment_saga: bool = True
    #: A fulfilment saga step not answered within this is compensated (stock, then order).
    saga_step_deadline_seconds: float = Field(default=30.0, gt=0)
    #: How often each worker's deadline sweeper looks for sagas past their step deadline.
    saga_sweep_seconds: float = Field(default=1.0, gt=0)
    #: The simulated payment gateway: latency of every call, of a ``slow…`` payment method,
    #: and the share of calls failing transiently.
    payment_latency_seconds: float = Field(default=0.0, ge=0)
    payment_slow_seconds: float = Field(default=5.0, ge=0)
    payment_failure_rate: float = Field(default=0.0, ge=0, le=1)
    #: Fault injection (tests, the demo): the share of handler calls that fail transiently
    #: before running, and of sent messages that are sent twice.
    fault_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_duplicate_rate: float = Field(default=0.0, ge=0, le=1)

    #: Workers drain every ``<queue>.XQ`` into the dead-letter store this often.
    dead_letter_ingest_seconds: float = Field(default=5.0, gt=0)
    #: A dead letter younger than this stays in ``.XQ`` (its middleware record may be on its way).
    dead_letter_grace_seconds: float = Field(default=2.0, ge=0)
    #: RabbitMQ's management API (unacknowledged counts); unset: derived from the AMQP URL.
    rabbitmq_management_url: SecretStr | None = None
    #: ``sagaworks status`` fails when a projection lags by more than this many events.
    max_projection_lag: int = Field(default=1000, ge=0)

    #: Snapshot every N events, by stream type (``{"sku": 50}``); unset types use the
    #: aggregate's ``SNAPSHOT_EVERY``. From the environment as JSON.
    snapshot_every: dict[str, int] = Field(default_factory=dict)

    #: The ops console (``sagaworks console``): where it listens, who may use it. An operator
    #: signs in with the token (and their name) or with basic auth; with neither set, a
    #: one-off token is made at start and printed. Read-only: every action is refused.
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8077, ge=0, le=65535)
    console_token: SecretStr | None = None
    console_user: str | None = None
    console_password: SecretStr | None = None
    console_read_only: bool = False
    #: Dramatiq's own Prometheus middleware (messages, durations, errors per actor).
    dramatiq_metrics: bool = True

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    def amqp(self) -> str | None:
        return self.amqp_url.get_secret_value() if self.amqp_url else None

    def mongodb(self) -> str | None:
        return self.mongodb_url.get_secret_value() if self.mongodb_url else None

    def write_concern(self) -> WriteConcernOptions:
        """The write concern for the client, as pymongo's keyword options."""
        w = self.write_concern_w
        return {"w": int(w) if w.isdigit() else w, "journal": self.write_concern_journal}

    def describe(self) -> dict[str, str]:
        """Where this process connects, with credentials redacted."""
        return {
            "amqp": redact_url(self.amqp() or "") or "in-process broker",
            "mongodb": redact_url(self.mongodb() or "") or "embedded SecantusDB",
            "database": self.mongodb_db,
            "write_concern": f"w={self.write_concern_w}, j={self.write_concern_journal}",
        }
