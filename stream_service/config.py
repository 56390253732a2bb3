"""Frozen, validated configuration. The only module that reads the environment or config files.

Precedence: defaults < TOML file (``--config``) < environment (``STREAM_SERVICE_*`` and
``KAFKA_BOOTSTRAP_SERVERS``) < command-line flags.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from stream_service.messages import Encoding

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Secret(str):
    """A string that never shows itself in reprs, logs or ``stream-service config``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('**********')"

    def reveal(self) -> str:
        return str.__str__(self)


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to reach the cluster."""

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "stream-service"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None  # a secret: redacted everywhere it is shown
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None  # a secret
    session_timeout_ms: PositiveInt = 45_000
    heartbeat_interval_ms: PositiveInt = 3_000
    max_poll_interval_ms: PositiveInt = 300_000
    fetch_max_bytes: PositiveInt = 16 * 1024 * 1024
    max_partition_fetch_bytes: PositiveInt = 1024 * 1024
    producer_max_request_size: PositiveInt = 1024 * 1024
    producer_linger_ms: NonNegativeInt = 5
    request_timeout_ms: PositiveInt = 40_000
    startup_timeout_s: PositiveFloat = 30.0


class TopicSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where requests come from and where answers go."""

    input: str = "requests"
    results: str = "results"
    errors: str = "errors"
    group_id: str = "stream-service"


class BatchSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Micro-batching: a batch closes at ``max_size`` records, ``max_bytes``, or ``linger_ms``."""

    max_size: PositiveInt = 512
    min_size: PositiveInt = 8
    initial_size: PositiveInt = 64
    max_bytes: PositiveInt = 4 * 1024 * 1024
    linger_ms: NonNegativeFloat = 5.0
    adaptive: bool = True
    target_batch_ms: PositiveFloat = 50.0


class TenantLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A per-tenant override of the limiter's defaults; unset fields inherit them."""

    rate: PositiveFloat | None = None
    burst: PositiveInt | None = None
    max_in_flight: PositiveInt | None = None
    weight: PositiveInt | None = None


class LimiterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Token buckets (requests/second, burst in requests). ``None`` rate means unlimited."""

    global_rate: PositiveFloat | None = None
    global_burst: PositiveInt = 1_000
    tenant_rate: PositiveFloat | None = None
    tenant_burst: PositiveInt = 100
    tenant_max_in_flight: PositiveInt = 10_000
    tenants: dict[str, TenantLimit] = {}


class ExecutorSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the processor runs and how much work may be outstanding at once."""

    kind: Literal["async", "thread", "process"] = "async"
    concurrency: PositiveInt = 256
    workers: PositiveInt = 2
    max_in_flight: PositiveInt = 10_000
    max_in_flight_bytes: PositiveInt = 64 * 1024 * 1024
    request_timeout_s: PositiveFloat = 30.0
    ordering: Literal["key", "partition", "unordered"] = "key"


class RetrySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exponential backoff with full jitter for retriable request failures."""

    max_attempts: PositiveInt = 3
    initial_backoff_s: NonNegativeFloat = 0.1
    max_backoff_s: NonNegativeFloat = 5.0
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0
    jitter: bool = True


class HttpProcessorSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An OpenAI-compatible chat-completions endpoint."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "STREAM_SERVICE_HTTP_API_KEY"
    api_key_file: str | None = None
    timeout_s: PositiveFloat = 30.0
    max_retries: NonNegativeInt = 3
    max_connections: PositiveInt = 64
    max_tokens: PositiveInt = 512
    temperature: NonNegativeFloat = 0.7


class ProcessorSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which processor runs: resonance, http, echo, or ``python:package.module:attribute``."""

    name: str = "resonance"
    hrv: bool = True
    profiles_dir: str | None = None
    http: HttpProcessorSettings = HttpProcessorSettings()
    options: dict[str, object] = {}  # handed to a ``python:`` factory as its own section


class CacheSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Result cache keyed by a strong hash of (prompt, tenant, profile_name)."""

    enabled: bool = True
    max_entries: PositiveInt = 10_000
    ttl_s: PositiveFloat = 300.0


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hard limits on input; a request over one becomes an ErrorRecord."""

    max_prompt_bytes: PositiveInt = 32 * 1024
    max_message_bytes: PositiveInt = 1024 * 1024
    tenant_max_per_window: PositiveInt | None = None
    window_s: PositiveFloat = 1.0
    tenant_max_queued: PositiveInt | None = None


class ObservabilitySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Metrics endpoint and logging. ``metrics_port`` 0 picks a free port; ``None`` disables."""

    metrics_host: str = "0.0.0.0"
    metrics_port: Port | None = 9102
    metrics: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    audit_requests: bool = False


class DeliverySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delivery guarantees and the timings of commit, drain and shutdown."""

    mode: Literal["at_least_once"] = "at_least_once"
    encoding: Encoding = "json"
    commit_interval_s: PositiveFloat = 1.0
    drain_timeout_s: PositiveFloat = 10.0
    shutdown_timeout_s: PositiveFloat = 30.0


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole, validated configuration of one service instance."""

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    batch: BatchSettings = BatchSettings()
    limiter: LimiterSettings = LimiterSettings()
    executor: ExecutorSettings = ExecutorSettings()
    retry: RetrySettings = RetrySettings()
    processor: ProcessorSettings = ProcessorSettings()
    cache: CacheSettings = CacheSettings()
    limits: LimitSettings = LimitSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    delivery: DeliverySettings = DeliverySettings()
