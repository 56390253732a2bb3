"""Frozen, validated configuration. The only module that reads the environment or config files.

Precedence: defaults < TOML file (``--config`` or ``STREAM_SERVICE_CONFIG``) < environment
(``STREAM_SERVICE_<SECTION>__<FIELD>`` and ``KAFKA_BOOTSTRAP_SERVERS``) < command-line flags.

:func:`load_config` merges the sources, converts every provided value into its field's type
with msgspec (text from the environment or ``--set`` non-strictly, JSON for tables), then
checks the rules that span fields. Anything wrong raises :class:`ConfigError` with one line
naming the setting, where its value came from and what is allowed::

    invalid setting batch.max_size = -3 (from env STREAM_SERVICE_BATCH__MAX_SIZE): expected an integer > 0

Secrets (any field named ``*password``, ``*secret``, ``*api_key``, ``*token``) are shown as
``***`` by ``repr()``, :func:`redacted` and ``stream-service config``. ``msgspec.to_builtins``
on a Config does reveal them: use :func:`redacted` to show a configuration.
"""

from __future__ import annotations

import argparse
import builtins
import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

import msgspec
import msgspec.inspect as mi

from stream_service.errors import ConfigError
from stream_service.messages import Encoding

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

REDACTED = "***"
SECRET_SUFFIXES = ("password", "secret", "api_key", "token")


def is_secret(name: str) -> bool:
    """Whether a setting (or a key inside a table setting) holds a secret, judged by its name."""
    return name.lower().endswith(SECRET_SUFFIXES)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if is_secret(str(k)) and v is not None else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
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
            shown = REDACTED if is_secret(name) and value is not None else _redact(value)
            fields.append(f"{name}={shown!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


class KafkaSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
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
    ordering: Literal["key", "partition", "unordered"] = "key"


class RetrySettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exponential backoff with full jitter for retriable request failures."""

    max_attempts: PositiveInt = 3
    initial_backoff_s: NonNegativeFloat = 0.1
    max_backoff_s: NonNegativeFloat = 5.0
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0
    jitter: bool = True


class HttpProcessorSettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An OpenAI-compatible chat-completions endpoint."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "STREAM_SERVICE_HTTP_API_KEY"
    api_key_file: str | None = None
    # The key itself; when unset, the loader fills it from $api_key_env, else from api_key_file.
    api_key: str | None = None  # a secret
    timeout_s: PositiveFloat = 30.0
    max_retries: NonNegativeInt = 3
    max_connections: PositiveInt = 64
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


class ObservabilitySettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Metrics endpoint and logging. ``metrics_port`` 0 picks a free port; ``None`` disables."""

    metrics_host: str = "0.0.0.0"
    metrics_port: Port | None = 9102
    metrics: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    audit_requests: bool = False


class DeliverySettings(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delivery guarantees and the timings of commit, drain and shutdown."""

    mode: Literal["at_least_once"] = "at_least_once"
    encoding: Encoding = "json"
    commit_interval_s: PositiveFloat = 1.0
    drain_timeout_s: PositiveFloat = 10.0
    shutdown_timeout_s: PositiveFloat = 30.0


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
    delivery: DeliverySettings = DeliverySettings()


# --------------------------------------------------------------------------------------------- loading

ENV_PREFIX = "STREAM_SERVICE_"
CONFIG_FILE_ENV = "STREAM_SERVICE_CONFIG"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
# STREAM_SERVICE_* variables that are not settings: read by the local-Kafka dev tool, or (like the
# default of processor.http.api_key_env) holding a secret. Any other unknown one is a typo.
_ENV_NOT_SETTINGS = frozenset({CONFIG_FILE_ENV, "STREAM_SERVICE_KAFKA_CACHE", "STREAM_SERVICE_KAFKA_VERSION"})
_SOURCE_RANK = {"default": 0, "file": 1, "env": 2, "flag": 3}
_PROCESSOR_NAME = re.compile(r"resonance|http|echo|python:[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


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


_SECTIONS: dict[str, type[msgspec.Struct]] = {}
SETTINGS: Mapping[str, Setting] = {s.key: s for s in _walk(Config, "", _SECTIONS)}
"""Every leaf setting by dotted key, in declaration order."""
_BY_ENV = {s.env_var: s for s in SETTINGS.values()}


class _Value(NamedTuple):
    raw: object
    source: str  # "file <path>", "env VAR", "flag --name"
    text: bool  # typed as text (environment, command line): parse it, convert it leniently


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _show(value: object, text: bool) -> str:
    if value is None:
        return "none"
    if text and isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def _invalid(name: str, value: object, source: str, allowed: str) -> ConfigError:
    text = source.startswith(("env ", "flag "))
    shown = REDACTED if is_secret(name) and value is not None else _show(value, text)
    return ConfigError(f"invalid setting {name} = {shown} (from {source}): expected {allowed}")


def _inner(info: mi.Type | None, field: str | None) -> mi.Type | None:
    """The type one step (a struct field, or a table/list item when ``field`` is None) inside ``info``."""
    for t in info.types if isinstance(info, mi.UnionType) else (info,):
        if field is not None and isinstance(t, mi.StructType):
            return next((f.type for f in t.fields if f.name == field), None)
        if field is None and isinstance(t, mi.DictType | mi.ListType):
            return t.value_type if isinstance(t, mi.DictType) else t.item_type
    return None


def _explain(
    exc: msgspec.ValidationError, name: str, raw: object, info: mi.Type, value: _Value
) -> ConfigError:
    """Turn msgspec's ``... - at `$.a[0].b``` into our one line, naming the setting at that path."""
    message, _, path = str(exc).partition(" - at `$")
    node: object = raw
    at: mi.Type | None = info
    for field, index in re.findall(r"\.([^.\[`]+)|\[([^\]]*)\]", path):
        at = _inner(at, field or None)
        name += f".{field}" if field else f"[{index}]"
        if field:
            node = node.get(field) if isinstance(node, dict) else None
        else:
            node = node[int(index)] if isinstance(node, list) and index.isdigit() else None
    unknown = re.match(r"Object contains unknown field `(.*)`", message)
    if unknown:
        known = ", ".join(f.name for f in at.fields) if isinstance(at, mi.StructType) else "none"
        return ConfigError(f"unknown setting {name}.{unknown[1]} (from {value.source}); known: {known}")
    allowed = describe(at) if at is not None else message[:1].lower() + message[1:]
    return _invalid(name, node, value.source, allowed)


def _convert(key: str, value: _Value) -> Any:
    """One provided value, converted into its setting's type; raises ConfigError naming the source."""
    setting = SETTINGS[key]
    raw = value.raw
    if (
        value.text
        and isinstance(raw, str)
        and raw
        and isinstance(setting.info, mi.DictType | mi.ListType | mi.StructType)
    ):
        try:
            raw = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            # Not echoed: a malformed table may hold a secret (processor.options) that redaction,
            # which works on parsed keys, cannot find.
            allowed = f"{setting.allowed}, written as JSON ({exc})"
            raise ConfigError(
                f"invalid setting {key} = <not JSON> (from {value.source}): expected {allowed}"
            ) from None
    if isinstance(setting.info, mi.UnionType) and setting.info.includes_none:
        # TOML and the environment have no null: an empty value (or, as text, "null") unsets it.
        if raw == "" or (value.text and raw == "null"):
            return None
    strict = not value.text
    try:
        if isinstance(setting.info, mi.DictType) and isinstance(raw, dict):
            # One entry at a time, so an error can name the entry (msgspec reports keys as [...]).
            item_type, item_info = get_args(setting.type)[1], setting.info.value_type
            converted = {}
            for item_key, item in raw.items():
                try:
                    converted[item_key] = msgspec.convert(item, item_type, strict=strict)
                except msgspec.ValidationError as exc:
                    raise _explain(exc, f"{key}.{item_key}", item, item_info, value) from None
            return msgspec.convert(converted, setting.type)
        return msgspec.convert(raw, setting.type, strict=strict)
    except msgspec.ValidationError as exc:
        raise _explain(exc, key, raw, setting.info, value) from None


def _read_file(path: str, origin: str) -> dict[str, _Value]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (from {origin})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} (from {origin}): {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    out: dict[str, _Value] = {}
    _flatten(data, "", f"file {path}", out)
    return out


def _flatten(table: dict[str, Any], prefix: str, source: str, out: dict[str, _Value]) -> None:
    for name, raw in table.items():
        key = prefix + name
        if key in SETTINGS:
            out[key] = _Value(raw, source, False)
        elif key in _SECTIONS:
            if not isinstance(raw, dict):
                raise _invalid(key, raw, source, f"a table [{key}]")
            _flatten(raw, key + ".", source, out)
        else:
            hint = _suggest(key, [*SETTINGS, *_SECTIONS])
            raise ConfigError(f"unknown setting {key} (from {source}){hint}")


def _read_env(environ: Mapping[str, str]) -> dict[str, _Value]:
    out: dict[str, _Value] = {}
    if BOOTSTRAP_ENV in environ:  # the conventional name; STREAM_SERVICE_KAFKA__BOOTSTRAP_SERVERS wins
        out["kafka.bootstrap_servers"] = _Value(environ[BOOTSTRAP_ENV], f"env {BOOTSTRAP_ENV}", True)
    for name, raw in environ.items():
        if (setting := _BY_ENV.get(name)) is not None:
            out[setting.key] = _Value(raw, f"env {name}", True)
    return out


def _check_env_names(environ: Mapping[str, str], values: Mapping[str, Any]) -> None:
    api_key_env = "processor.http.api_key_env"
    allowed = _ENV_NOT_SETTINGS | {SETTINGS[api_key_env].default, values.get(api_key_env)}
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in _BY_ENV and name not in allowed:
            hint = _suggest(name, _BY_ENV) or f"; settings are {ENV_PREFIX}<SECTION>__<FIELD>"
            raise ConfigError(f"unknown environment variable {name}: no setting reads it{hint}")


def _resolve_api_key(environ: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    """Fill processor.http.api_key from api_key_file, else from $api_key_env (this module reads both)."""
    key, file_key, env_key = (f"processor.http.{name}" for name in ("api_key", "api_key_file", "api_key_env"))
    if values.get(key) is not None:
        return
    if (path := values.get(file_key)) is not None:
        try:
            values[key] = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _invalid(file_key, path, sources[file_key], f"a readable file ({exc})") from None
        sources[key] = f"file {path}"
    elif environ.get(var := values.get(env_key, SETTINGS[env_key].default)):
        values[key], sources[key] = environ[var], f"env {var}"


def _get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_rules(config: Config, sources: Mapping[str, str]) -> None:
    """The rules that span fields (msgspec checks each field on its own)."""

    def source(key: str) -> str:
        return sources.get(key, "default")

    def ordered(lower: str, upper: str, *, strict: bool = False) -> None:
        low, high = _get(config, lower), _get(config, upper)
        if low < high or (low == high and not strict):
            return
        # Blame the setting from the later source: it is the one just changed.
        if _SOURCE_RANK[source(upper).split()[0]] >= _SOURCE_RANK[source(lower).split()[0]]:
            blame, other, relation = upper, lower, ">" if strict else ">="
        else:
            blame, other, relation = lower, upper, "<" if strict else "<="
        allowed = f"a value {relation} {other} ({_show(_get(config, other), False)}, from {source(other)})"
        raise _invalid(blame, _get(config, blame), source(blame), allowed)

    # initial_size is a starting point, clamped into [min_size, max_size]: lowering max_size alone
    # must not force the operator to lower initial_size too.
    ordered("batch.min_size", "batch.max_size")
    ordered("retry.initial_backoff_s", "retry.max_backoff_s")
    ordered("kafka.heartbeat_interval_ms", "kafka.session_timeout_ms", strict=True)
    protocol = config.kafka.security_protocol
    if protocol.startswith("SASL_"):
        for key in ("kafka.sasl_mechanism", "kafka.sasl_username", "kafka.sasl_password"):
            if _get(config, key) is None:
                allowed = SETTINGS[key].allowed.removesuffix(", or none")
                when = f"kafka.security_protocol is {protocol} (from {source('kafka.security_protocol')})"
                raise _invalid(key, None, source(key), f"{allowed} when {when}")
    for key in ("kafka.ssl_cafile", "kafka.ssl_certfile", "kafka.ssl_keyfile"):
        if (path := _get(config, key)) is not None and not os.path.isfile(path):
            raise _invalid(key, path, source(key), "the path of an existing file")
    if not _PROCESSOR_NAME.fullmatch(config.processor.name):
        allowed = "resonance, http, echo, or python:package.module:attribute"
        raise _invalid("processor.name", config.processor.name, source("processor.name"), allowed)


def load_config_with_sources(
    *,
    file: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    flag_labels: Mapping[str, str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """Like :func:`load_config`, also returning where each non-default setting came from."""
    environ = os.environ if environ is None else environ
    provided: dict[str, _Value] = {}
    origin = "flag --config"
    if file is None and environ.get(CONFIG_FILE_ENV):
        file, origin = environ[CONFIG_FILE_ENV], f"env {CONFIG_FILE_ENV}"
    if file is not None:
        provided.update(_read_file(file, origin))
    provided.update(_read_env(environ))
    for key, raw in (flags or {}).items():
        label = (flag_labels or {}).get(key, f"flag --set {key}")
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key} (from {label})" + _suggest(key, SETTINGS))
        provided[key] = _Value(raw, label, isinstance(raw, str))
    values = {key: _convert(key, value) for key, value in provided.items()}
    sources = {key: value.source for key, value in provided.items()}
    _check_env_names(environ, values)
    _resolve_api_key(environ, values, sources)
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        config = msgspec.convert(nested, Config)
    except msgspec.ValidationError as exc:  # unexpected: each value was converted on its own above
        raise ConfigError(f"invalid configuration: {exc}") from None
    _check_rules(config, sources)
    return config, sources


def load_config(
    *,
    file: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    flag_labels: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from defaults < TOML ``file`` < ``environ`` (default ``os.environ``) < ``flags``.

    ``flags`` maps dotted keys (``"topics.input"``) to values; strings are parsed like environment
    values. ``flag_labels`` names each flag for error messages (default ``flag --set KEY``).
    Raises :class:`ConfigError` (one line: setting, source, what is allowed) on any invalid input.
    """
    return load_config_with_sources(file=file, environ=environ, flags=flags, flag_labels=flag_labels)[0]


def redacted(config: Config) -> dict[str, Any]:
    """The effective configuration as builtins, every secret replaced by ``"***"`` (None stays None)."""
    result: dict[str, Any] = _redact(msgspec.to_builtins(config))
    return result


# ----------------------------------------------------------------------------------------- command line

_FLAGS: tuple[tuple[str, str], ...] = (
    ("--bootstrap-servers", "kafka.bootstrap_servers"),
    ("--input-topic", "topics.input"),
    ("--results-topic", "topics.results"),
    ("--errors-topic", "topics.errors"),
    ("--group-id", "topics.group_id"),
    ("--processor", "processor.name"),
    ("--executor", "executor.kind"),
    ("--metrics-port", "observability.metrics_port"),
    ("--log-level", "observability.log_level"),
)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, the common setting flags and a repeatable ``--set KEY=VALUE`` to ``parser``."""
    group = parser.add_argument_group("configuration", "flags override the config file and the environment")
    group.add_argument(
        "--config", dest="config_file", metavar="PATH", help=f"TOML config file (default: ${CONFIG_FILE_ENV})"
    )
    for flag, key in _FLAGS:
        info = SETTINGS[key].info
        choices = list(info.values) if key == "executor.kind" and isinstance(info, mi.LiteralType) else None
        help_text = f"sets {key} (env {SETTINGS[key].env_var})"
        group.add_argument(flag, dest=_dest(flag), choices=choices, help=help_text)
    group.add_argument(
        "--set",
        dest="config_overrides",
        action="append",
        metavar="KEY=VALUE",
        help="set any setting by dotted key, value written as in the environment (repeatable)",
    )


def flags_from_args(args: argparse.Namespace) -> tuple[str | None, dict[str, object], dict[str, str]]:
    """The config file, flags and flag labels given on the command line (named flags win over --set)."""
    flags: dict[str, object] = {}
    labels: dict[str, str] = {}
    for item in getattr(args, "config_overrides", None) or ():
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"invalid --set {item}: expected KEY=VALUE, e.g. --set batch.max_size=100")
        key = key.strip()
        flags[key], labels[key] = text, f"flag --set {key}"
    for flag, key in _FLAGS:
        if (value := getattr(args, _dest(flag), None)) is not None:
            flags[key], labels[key] = value, f"flag {flag}"
    return getattr(args, "config_file", None), flags, labels


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config for parsed command-line arguments (see :func:`add_config_arguments`)."""
    file, flags, labels = flags_from_args(args)
    return load_config(file=file, environ=environ, flags=flags, flag_labels=labels)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` subcommand (prints the effective configuration, secrets redacted)."""
    from stream_service.tools import show_config  # here, not at the top: show_config imports this module

    show_config.register(subparsers)
