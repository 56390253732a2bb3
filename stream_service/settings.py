"""The settings of one service instance: frozen msgspec Structs, their defaults and field limits,
and :data:`SETTINGS`, the catalogue of every leaf setting (dotted key, environment variable name,
type, default, allowed values in words) that error messages and the reference table use.

No I/O here: :mod:`stream_service.config` fills these from defaults, a TOML file, the environment
and command-line flags, and is the only module that reads any of them. Other modules import
the Structs from either place (``stream_service.config`` re-exports them).

Secrets (see :func:`is_secret`: ``*password``, ``*secret``, ``*api_key``, ``*token``,
``credentials``, ``private_key``, ``apiKey`` ...) and the credentials in URLs are shown as ``***``
by ``repr()``; ``msgspec.to_builtins`` on a Config does reveal them.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import msgspec.inspect as mi

from stream_service.wire import Encoding

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

Ordering = Literal["key", "partition", "unordered"]

REDACTED = "***"
# A name holds a secret when one of its words is one of these, or it ends in one of the pairs.
SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "credential", "credentials", "apikey"}
)
SECRET_ENDINGS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")})
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]*@)")


def is_secret(name: str) -> bool:
    """Whether a setting (or a key inside a table setting) holds a secret, judged by its name.

    Words are split at ``_``, ``-``, ``.`` and camelCase: ``sasl_password``, ``apiKey``,
    ``credentials``, ``private_key`` and ``auth-token`` are secrets; ``max_tokens`` and
    ``api_key_env`` (the name of a variable) are not.
    """
    words = [word.lower() for word in _WORDS.findall(name)]
    return any(word in SECRET_WORDS for word in words) or tuple(words[-2:]) in SECRET_ENDINGS


def redact_url(text: str) -> str:
    """``text`` with the user and password of every URL in it (``https://user:pass@host``) hidden."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def redact_tree(value: Any) -> Any:
    """``value`` (builtins: dicts, lists, scalars) with every secret-named key's value shown as
    ``***`` and the credentials of URLs hidden."""
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret(str(k)) and v is not None else redact_tree(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value


class Secret(str):
    """A string that never shows itself in reprs, logs or ``stream-service config``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('**********')"

    def reveal(self) -> str:
        return str.__str__(self)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every settings struct: a repr that hides secrets, including inside tables."""

    def __repr__(self) -> str:
        fields = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            shown = REDACTED if is_secret(name) and value is not None else redact_tree(value)
            fields.append(f"{name}={shown!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


class KafkaSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to reach the cluster."""

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "stream-service"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None  # a secret: redacted everywhere it is shown
    # OAUTHBEARER: "file:PATH" or "python:package.module:attribute" (stream_service.oauth)
    sasl_oauth_token_provider: str | None = None
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
    # Where a group with no committed offset starts: the service relies on "earliest".
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    group_instance_id: str | None = None  # static membership (KIP-345): unique per replica
    # aiokafka keyword arguments passed through (-X key=value); see stream_service.client_options
    client_options: dict[str, str | int | float | bool] = {}


class TopicSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where requests come from and where answers go."""

    input: str = "requests"
    results: str = "results"
    errors: str = "errors"
    group_id: str = "stream-service"


class BatchSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Micro-batching: a batch closes at ``max_size`` records, ``max_bytes``, or ``linger_ms``."""

    max_size: PositiveInt = 2048
    min_size: PositiveInt = 8
    initial_size: PositiveInt = 256
    max_bytes: PositiveInt = 4 * 1024 * 1024
    linger_ms: NonNegativeFloat = 5.0
    adaptive: bool = True
    target_batch_ms: PositiveFloat = 50.0


class TenantLimit(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A per-tenant override of the limiter's defaults; unset fields inherit them."""

    rate: PositiveFloat | None = None
    burst: PositiveInt | None = None
    max_in_flight: PositiveInt | None = None
    weight: PositiveInt | None = None


class LimiterSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Token buckets (requests/second, burst in requests). ``None`` rate means unlimited."""

    global_rate: PositiveFloat | None = None
    global_burst: PositiveInt = 1_000
    tenant_rate: PositiveFloat | None = None
    tenant_burst: PositiveInt = 100
    tenant_max_in_flight: PositiveInt = 10_000
    tenants: dict[str, TenantLimit] = {}


class ExecutorSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the processor runs and how much work may be outstanding at once."""

    kind: Literal["async", "thread", "process"] = "async"
    concurrency: PositiveInt = 256
    workers: PositiveInt = 2
    max_in_flight: PositiveInt = 10_000
    max_in_flight_bytes: PositiveInt = 64 * 1024 * 1024
    request_timeout_s: PositiveFloat = 30.0
    ordering: Ordering = "key"


class RetrySettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exponential backoff with full jitter for retriable request failures."""

    max_attempts: PositiveInt = 3
    initial_backoff_s: NonNegativeFloat = 0.1
    max_backoff_s: NonNegativeFloat = 5.0
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0
    jitter: bool = True


class HttpProcessorSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An OpenAI-compatible chat-completions endpoint."""

    # When unset, the loader fills base_url from $OPENAI_BASE_URL, and proxy from $HTTPS_PROXY
    # (or $HTTP_PROXY for an http:// base_url, then $ALL_PROXY) unless $NO_PROXY names the host.
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "STREAM_SERVICE_HTTP_API_KEY"
    api_key_file: str | None = None
    # The key itself; when unset, the loader fills it from api_key_file, else $api_key_env,
    # else $OPENAI_API_KEY.
    api_key: str | None = None  # a secret
    # One attempt's limit; unset, the engine's executor.request_timeout_s alone bounds it.
    timeout_s: PositiveFloat | None = None
    max_connections: PositiveInt = 64
    http2: bool = True
    proxy: str | None = None  # its user:password, if any, is redacted wherever it is shown
    max_tokens: PositiveInt = 512
    temperature: NonNegativeFloat = 0.7


class ProcessorSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which processor runs: resonance, http, echo, or ``python:package.module:attribute``."""

    name: str = "resonance"
    hrv: bool = True
    profiles_dir: str | None = None
    http: HttpProcessorSettings = HttpProcessorSettings()
    options: dict[str, object] = {}  # handed to a ``python:`` factory as its own section


class CacheSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Result cache keyed by a strong hash of (prompt, tenant, profile_name)."""

    enabled: bool = True
    max_entries: PositiveInt = 10_000
    ttl_s: PositiveFloat = 300.0


class LimitSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hard limits on input; a request over one becomes an ErrorRecord."""

    max_prompt_bytes: PositiveInt = 32 * 1024
    max_message_bytes: PositiveInt = 1024 * 1024
    tenant_max_per_window: PositiveInt | None = None
    window_s: PositiveFloat = 1.0
    tenant_max_queued: PositiveInt | None = None


class RuntimeSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The process: which asyncio event loop runs the service, and how often the garbage
    collector looks for cycles among young objects (see :mod:`stream_service.heap`)."""

    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # container allocations between young-generation passes (CPython: 700); 0 turns the
    # collector off (reference counting still frees everything but cycles)
    gc_young_threshold: NonNegativeInt = (
        50_000  # heap.DEFAULT_YOUNG_THRESHOLD (settings imports nothing of ours)
    )


class ObservabilitySettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Metrics endpoint and logging. ``metrics_port`` 0 picks a free port; ``None`` disables."""

    metrics_host: str = "0.0.0.0"
    metrics_port: Port | None = 8080
    metrics: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    audit_requests: bool = False


class DeliverySettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delivery guarantees and the timings of commit, drain and shutdown."""

    guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    encoding: Encoding = "json"
    commit_interval_s: PositiveFloat = 1.0
    drain_timeout_s: PositiveFloat = 10.0
    shutdown_timeout_s: PositiveFloat = 30.0
    transactional_id_prefix: str = "stream-service"
    transaction_interval_ms: PositiveFloat = 100.0
    transaction_max_records: PositiveInt = 10_000


class TracingSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OpenTelemetry tracing across Kafka (the ``stream-service[otel]`` extra); off by default.

    The SDK reads its standard ``OTEL_*`` variables itself (endpoint, headers, sampler, batch
    export limits, resource attributes); ``exporter`` falls back on ``OTEL_TRACES_EXPORTER``."""

    enabled: bool = False
    # Unset: OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES), else "stream-service".
    service_name: str | None = None
    exporter: Literal["otlp", "console", "none"] = "otlp"


class Config(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
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
    runtime: RuntimeSettings = RuntimeSettings()
    delivery: DeliverySettings = DeliverySettings()
    tracing: TracingSettings = TracingSettings()


# ------------------------------------------------------------------------------------------- catalogue

ENV_PREFIX = "STREAM_SERVICE_"
"""Every setting can be set by the environment variable ``STREAM_SERVICE_<SECTION>__<FIELD>``."""


class Setting(NamedTuple):
    """One leaf setting: dotted key, environment variable, Python type, default, allowed values in words."""

    key: str
    env_var: str
    type: Any
    info: mi.Type
    default: Any
    allowed: str


def _number(value: float) -> str:
    return f"{value:g}"


def _bounds(t: mi.IntType | mi.FloatType) -> str:
    if t.ge is not None and t.le is not None:
        return f" from {_number(t.ge)} to {_number(t.le)}"
    limits = ((">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le))
    return "".join(f" {op} {_number(v)}" for op, v in limits if v is not None)


def describe(t: mi.Type) -> str:
    """What a value of this type may be, in words: for error messages and the reference table."""
    match t:
        case mi.BoolType():
            return "true or false"
        case mi.IntType():
            return "an integer" + _bounds(t)
        case mi.FloatType():
            return "a number" + _bounds(t)
        case mi.StrType():
            return "a string"
        case mi.LiteralType():
            return "one of " + ", ".join(str(v) for v in t.values)
        case mi.UnionType():
            text = " or ".join(describe(m) for m in t.types if not isinstance(m, mi.NoneType))
            return f"{text}, or none" if t.includes_none else text
        case mi.StructType():
            return "a table of " + ", ".join(f.name for f in t.fields)
        case mi.DictType(value_type=mi.StructType() as value):
            return "a table mapping names to tables of " + ", ".join(f.name for f in value.fields)
        case mi.DictType(value_type=mi.AnyType() | mi.CustomType(cls=builtins.object)):
            return "a table"
        case mi.DictType():
            return f"a table mapping names to {describe(t.value_type)}"
        case mi.ListType():
            return f"a list of {describe(t.item_type)}"
    return "any value"


def _walk(
    cls: type[msgspec.Struct], prefix: str, sections: dict[str, type[msgspec.Struct]]
) -> Iterator[Setting]:
    sections[prefix.rstrip(".")] = cls
    for field in msgspec.structs.fields(cls):
        key = prefix + field.name
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            yield from _walk(field.type, key + ".", sections)
            continue
        default = field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory()
        info = mi.type_info(field.type)
        env_var = ENV_PREFIX + key.upper().replace(".", "__")
        yield Setting(key, env_var, field.type, info, default, describe(info))


SECTIONS: dict[str, type[msgspec.Struct]] = {}
"""Every section (``""`` for the root, ``"processor.http"``, ...) by dotted key: filled below."""
SETTINGS: Mapping[str, Setting] = {s.key: s for s in _walk(Config, "", SECTIONS)}
"""Every leaf setting by dotted key, in declaration order."""
