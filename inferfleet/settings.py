"""Typed settings, read from `INFERFLEET_*` environment variables.

Build one `Settings` in `main()` or an app factory and pass it down; nothing in the
project reads the environment at import time. Defaults point at the local stack that
`scripts/stack.sh up` starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferfleet.errors import ConfigError
from inferfleet.kafkasecurity import (
    KafkaSecurity,
    is_pem,
    parse_mechanism,
    parse_protocol,
    parse_tls,
)

KNOWN_PROVIDERS = frozenset(
    {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
)


class Settings(BaseSettings):
    """Everything a service needs to reach the outside world, and its limits."""

    model_config = SettingsConfigDict(
        env_prefix="INFERFLEET_", extra="forbid", frozen=True, enable_decoding=False
    )

    database_url: SecretStr = SecretStr(
        "postgresql+psycopg://inferfleet:inferfleet@127.0.0.1:5432/inferfleet"
    )
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_partitions: int = Field(default=12, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    s3_endpoint_url: str | None = "http://127.0.0.1:5000"
    s3_bucket: str = "inferfleet"
    s3_region: str = "us-east-1"
    aws_access_key_id: SecretStr = SecretStr("testing")
    aws_secret_access_key: SecretStr = SecretStr("testing")

    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    max_bulk_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    max_bulk_items: int = Field(default=10_000, ge=1)
    produce_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=5, ge=1)
    # Webhook targets allowed although they resolve to loopback or private addresses:
    # host names, addresses or CIDR blocks (tests and local demos).
    webhook_allowlist: list[str] = Field(default_factory=list)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Requests per API key, in the `limits` library's notation ("100/second").
    rate_limit: str = "1000/second"
    # New jobs for a topic are refused (429) while its consumer lag passes this; 0 = off.
    admission_max_lag: int = Field(default=2_000_000, ge=0)
    admission_check_s: float = Field(default=2.0, gt=0)
    # Inputs larger than this (JSON bytes) travel through S3 instead of the message.
    claim_check_bytes: int = Field(default=256 * 1024, ge=1)
    # Outputs larger than this (JSON bytes) are written to S3 and returned as output_uri.
    output_inline_bytes: int = Field(default=256 * 1024, ge=1)
    presign_expiry_s: int = Field(default=3600, ge=1)
    # S3 prefixes a tenant may name, `{bucket}` and `{tenant}` filled in.
    tenant_prefixes: list[str] = Field(default_factory=lambda: ["s3://{bucket}/tenants/{tenant}/"])

    # Webhook dispatch (scheduler/).
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # A delivery is retried until this long after its event, then marked failed.
    webhook_retry_window_s: float = Field(default=24 * 3600.0, gt=0)
    webhook_backoff_base_s: float = Field(default=5.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    dispatch_interval_s: float = Field(default=1.0, gt=0)
    dispatch_batch: int = Field(default=200, ge=1)
    # After a rotation the previous webhook secret also signs for this long.
    secret_overlap_s: float = Field(default=24 * 3600.0, ge=0)

    # Schedules (scheduler/): beat evaluates every schedule this often; a scheduled time
    # found more than `schedule_grace_s` late was missed (the scheduler was down).
    schedule_tick_s: float = Field(default=15.0, gt=0)
    schedule_grace_s: float = Field(default=300.0, ge=0)

    # Batches (scheduler/ingest.py, scheduler/results.py): how often beat looks for
    # batches to ingest and batches whose jobs all ended; how long a task holds a batch
    # without renewing (a crashed ingest is taken up again after it); jobs per insert
    # and produce; invalid lines whose details a batch keeps.
    batch_poll_s: float = Field(default=1.0, gt=0)
    batch_lease_s: float = Field(default=60.0, gt=0)
    batch_chunk_rows: int = Field(default=5000, ge=1)
    batch_max_invalid_lines: int = Field(default=1000, ge=0)

    # Sweeps (scheduler/sweeps.py): beat starts the unproduced and expiry sweeps every
    # `sweep_interval_s`, the retention sweep every `sweep_retention_interval_s`; a run
    # stops after `sweep_interval_s` of work and the next one goes on.
    sweep_interval_s: float = Field(default=30.0, gt=0)
    sweep_retention_interval_s: float = Field(default=3600.0, gt=0)
    # A `queued` job this old whose message was never produced is produced again; keep
    # it well above `produce_timeout_s`, so a submit still producing is never swept.
    sweep_unproduced_after_s: float = Field(default=60.0, gt=0)
    sweep_chunk: int = Field(default=1000, ge=1)
    # Terminal jobs (and finished batches) older than this are deleted; 0 = keep forever.
    result_retention_days: float = Field(default=30.0, ge=0)
    # The scheduler worker's /metrics (sweep counts); 0 = not served.
    scheduler_metrics_host: str = "127.0.0.1"
    scheduler_metrics_port: int = Field(default=0, ge=0, le=65535)

    # Worker.
    worker_models: list[str] = Field(default_factory=lambda: ["fraud"])
    worker_group: str = "inferfleet-workers"
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int = Field(default=9100, ge=0, le=65535)
    poll_max_records: int = Field(default=2000, ge=1)
    # A job whose inference fails is tried this many times (redeliveries included),
    # then marked failed and its message copied to the topic's dead-letter topic.
    max_attempts: int = Field(default=3, ge=1)
    poll_timeout_ms: int = Field(default=500, ge=1)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    # How long the group waits for a crashed worker before moving its partitions.
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    model_cache_dir: Path = Path(".stack/model-cache")
    # Versions loaded (or loading) at once, a hard bound; alias targets are never unloaded.
    model_cache_versions: int = Field(default=4, ge=1)
    # ONNX Runtime: providers in order of preference (those this build lacks are skipped,
    # TensorRT also where its libraries do not load; CPU is always last), and the options
    # that matter for each (inferfleet.models.sessions).
    providers: list[str] = Field(
        default_factory=lambda: [
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
    )
    gpu_device_id: int = Field(default=0, ge=0)
    gpu_mem_limit_bytes: int = Field(default=0, ge=0)  # 0 = no limit
    trt_engine_cache_dir: Path | None = None
    trt_fp16: bool = False
    intra_op_threads: int = Field(default=0, ge=0)  # 0 = ONNX Runtime's choice
    registry_poll_s: float = Field(default=2.0, gt=0)

    # Webhook targets and receivers (inferfleet/jobs/webhooktargets.py, scheduler/dispatch.py).
    # The longest wait for a webhook host's addresses at submit (then accepted: the
    # dispatcher resolves again at each attempt, within the attempt's deadline).
    webhook_dns_timeout_s: float = Field(default=2.0, gt=0)
    # An egress proxy (http://host:port, e.g. smokescreen) every delivery goes through;
    # it then does the address checks. Unset: the dispatcher connects to checked
    # addresses itself.
    webhook_proxy: str | None = None
    # Delivery threads per dispatcher process, and how many of them one tenant's
    # attempts may hold at once (fewer, so other tenants always find a free one).
    dispatch_threads: int = Field(default=64, ge=2)
    webhook_tenant_inflight: int = Field(default=16, ge=1)
    # Worker: a loaded version no job has used for this long may be unloaded to load
    # another one a job names (`worker.modelstore`).
    model_idle_s: float = Field(default=30.0, ge=0)

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; known: {sorted(KNOWN_PROVIDERS)}")
        return value

    @field_validator(
        "worker_models", "providers", "webhook_allowlist", "tenant_prefixes", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        """Lists come from the environment as JSON (`["a", "b"]`) or comma-separated."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"not a JSON list: {e}") from e
        return [part.strip() for part in value.split(",") if part.strip()]

    # API: what a request may cost before its route runs, the probes, unknown keys.
    # A body above `large_body_bytes` needs one of `large_body_slots` (per process) to be
    # read and parsed; a request waits up to `large_body_wait_s` for one, then gets 503.
    large_body_bytes: int = Field(default=1024 * 1024, ge=1)
    large_body_slots: int = Field(default=2, ge=1)
    large_body_wait_s: float = Field(default=2.0, ge=0)
    # A body holding more JSON values than this is refused before it is parsed (how deep
    # inputs may nest is `inferfleet.jsondepth.MAX_DEPTH`, the same at every door).
    json_max_values: int = Field(default=2_000_000, ge=1)
    # A key the database did not know is refused without asking again for this long;
    # at most `unknown_key_cache_size` such keys are remembered (0 s = off).
    unknown_key_cache_s: float = Field(default=5.0, ge=0)
    unknown_key_cache_size: int = Field(default=10_000, ge=1)
    # /readyz answers from a check of Postgres and Kafka run this often in the background.
    readiness_interval_s: float = Field(default=2.0, gt=0)
    # `inferfleet api --workers N` (N > 1): the folder where its processes keep their
    # Prometheus values (emptied of *.db files at start); unset, a temporary folder.
    api_metrics_dir: Path | None = None

    # Group commit of submits (api/plumbing/groupcommit.py): a submit waits at most
    # `submit_window_ms` for others to share its insert, produce and produced_at update
    # (0 = no wait: only those already waiting join), and a group holds at most
    # `submit_max_jobs` jobs (a bulk submit above that goes alone).
    submit_window_ms: float = Field(default=2.0, ge=0)
    submit_max_jobs: int = Field(default=500, ge=1)

    # API caches: key -> caller and alias -> version are dropped when Postgres announces a
    # change (`inferfleet.clients.notify`); an entry older than this is asked again anyway,
    # the bound while the notification listener is down (0 = no caching).
    cache_max_age_s: float = Field(default=5.0, ge=0)

    # Server-Sent Events (`api.plumbing.events`): how often a stream looks at its job or
    # batch when no notification woke it, and the longest it stays silent.
    events_tick_s: float = Field(default=1.0, gt=0)
    events_keepalive_s: float = Field(default=15.0, gt=0)

    # The sweep of produced jobs no worker claimed (scheduler/sweeps.py, reproduce_stale)
    # produces a `queued` job again once it has waited this many sweep intervals since
    # its message was produced and the worker group has read past that message.
    sweep_stale_after_intervals: int = Field(default=10, ge=1)

    # Kafka security (inferfleet/kafkasecurity.py), for every Kafka client the services
    # make. Kafka's spellings or KEDA's (`sasl: scram_sha512`, `tls: enable`), so the
    # Secret KEDA's TriggerAuthentication reads feeds these too. Unset, the protocol
    # follows from `kafka_tls` and `kafka_sasl_mechanism`. The CA, certificate and key
    # are a PEM file's path or the PEM text itself (as a Secret holds it).
    kafka_security_protocol: str | None = None
    kafka_tls: bool | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca: str | None = None
    kafka_ssl_cert: str | None = None
    kafka_ssl_key: SecretStr | None = None
    # Day partitions of jobs and webhook rows (`scheduler.partitions`): the scheduler
    # keeps today's and this many days' after it made, every `sweep_retention_interval_s`.
    partition_days_ahead: int = Field(default=7, ge=1)

    # The pipelined worker (worker/pipeline.py): units polled and decoded ahead of the
    # one running on each lane's thread (the hand-off queues' depth), and the batch-lane
    # records a unit may take while the interactive lane is active (None: a whole poll;
    # smaller leaves the interactive lane more of a machine the batch fills,
    # `worker.lanes.batch_room`).
    worker_handoff_depth: int = Field(default=1, ge=1, le=4)
    lane_batch_share: int | None = Field(default=None, ge=1)

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _kafka_protocol(cls, value: object) -> object:
        return parse_protocol(value)

    @field_validator("kafka_sasl_mechanism", mode="before")
    @classmethod
    def _kafka_mechanism(cls, value: object) -> object:
        return parse_mechanism(value)

    @field_validator("kafka_tls", mode="before")
    @classmethod
    def _kafka_tls(cls, value: object) -> object:
        return parse_tls(value)

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca",
        "kafka_ssl_cert",
        "kafka_ssl_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """A Secret's empty key, passed on as an empty variable, means not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_ssl_ca", "kafka_ssl_cert", "kafka_ssl_key")
    @classmethod
    def _pem_or_file(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and not is_pem(text) and not Path(text).is_file():
            raise ValueError("neither PEM text (-----BEGIN ...) nor the path of a file")
        return value

    @model_validator(mode="after")
    def _kafka_security_whole(self) -> Settings:
        problems = self.kafka_security().problems()
        if problems:
            raise ValueError("Kafka security settings do not fit: " + "; ".join(problems))
        return self

    def kafka_security(self) -> KafkaSecurity:
        """The Kafka security settings as one value, for checks and for the clients."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            tls=self.kafka_tls,
            mechanism=self.kafka_sasl_mechanism,
            has_username=self.kafka_sasl_username is not None,
            has_password=self.kafka_sasl_password is not None,
            has_ca=self.kafka_ssl_ca is not None,
            has_cert=self.kafka_ssl_cert is not None,
            has_key=self.kafka_ssl_key is not None,
        )


PREFIX = "INFERFLEET_"
# Variables with the prefix that the project's scripts and tests read, not the services;
# and the client's (inferfleet-client), which a shell that runs a service may hold too.
SCRIPT_VARIABLES = frozenset(
    {
        "INFERFLEET_URL",
        "INFERFLEET_API_KEY",
        "INFERFLEET_VENV",
        "INFERFLEET_DEMO_API_PORT",
        "INFERFLEET_DEMO_KEY",
        "INFERFLEET_DEMO_SECRET",
        "INFERFLEET_TEST_DATABASE_URL",
    }
)


# Settings whose values never appear in an error message.
SECRET_VARIABLES = frozenset(
    PREFIX + name.upper()
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation)
)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad or unknown one fails here, named."""
    unknown = sorted(
        name
        for name in os.environ
        if name.startswith(PREFIX)
        and name not in SCRIPT_VARIABLES
        and name[len(PREFIX) :].lower() not in Settings.model_fields
    )
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; see the README's table")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = []
        for err in e.errors():
            if not err["loc"]:  # a check across settings: its message names them
                problems.append(err["msg"])
                continue
            name = PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            value = "'**********'" if name in SECRET_VARIABLES else repr(err.get("input"))
            problems.append(f"{name} has value {value}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from e
