"""Loading the configuration. The only module that reads the environment or config files.

Precedence: defaults < TOML file (``--config`` or ``STREAM_SERVICE_CONFIG``) < environment
(``STREAM_SERVICE_<SECTION>__<FIELD>`` and ``KAFKA_BOOTSTRAP_SERVERS``) < command-line flags.
The http processor's settings also fall back on conventional variables when no source above
gives them (:func:`_resolve_http`): ``api_key`` on ``api_key_file``, then ``$api_key_env``, then
``OPENAI_API_KEY``; ``base_url`` on ``OPENAI_BASE_URL``; ``proxy`` on ``HTTPS_PROXY`` /
``HTTP_PROXY`` / ``ALL_PROXY`` unless ``NO_PROXY`` names the endpoint's host or it is a
loopback address. ``tracing.exporter`` falls back on ``OTEL_TRACES_EXPORTER``.

One exception to "the only module": with ``tracing.enabled``, the OpenTelemetry SDK reads its
standard ``OTEL_*`` variables itself (``OTEL_EXPORTER_OTLP_ENDPOINT`` and the exporter's other
settings, ``OTEL_TRACES_SAMPLER``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_BSP_*``, ``OTEL_PROPAGATORS``, ...). Those names do not start with ``STREAM_SERVICE_``, so
the strict check of unknown ``STREAM_SERVICE_*`` variables never sees them.

:func:`load_config` merges the sources, converts every provided value into its field's type
with msgspec (text from the environment or ``--set`` non-strictly, JSON for tables), then
checks the rules that span fields. Anything wrong raises :class:`ConfigError` with one line
naming the setting, where its value came from and what is allowed::

    invalid setting batch.max_size = -3 (from env STREAM_SERVICE_BATCH__MAX_SIZE): expected an integer > 0

The settings themselves (frozen Structs, defaults, limits) live in :mod:`stream_service.settings`
and are re-exported here; the command-line flags in :mod:`stream_service.config_cli`.

Secrets (any field named ``*password``, ``*secret``, ``*api_key``, ``*token``) are shown as
``***`` by ``repr()``, :func:`redacted` and ``stream-service config``. ``msgspec.to_builtins``
on a Config does reveal them: use :func:`redacted` to show a configuration.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, get_args

import msgspec
import msgspec.inspect as mi

from stream_service import client_options, oauth
from stream_service.errors import ConfigError
from stream_service.settings import (
    ENV_PREFIX,
    REDACTED,
    SECTIONS,
    SETTINGS,
    BatchSettings,
    CacheSettings,
    Config,
    DeliverySettings,
    ExecutorSettings,
    HttpProcessorSettings,
    KafkaSettings,
    LimiterSettings,
    LimitSettings,
    ObservabilitySettings,
    ProcessorSettings,
    RetrySettings,
    Secret,
    Setting,
    TenantLimit,
    TopicSettings,
    TracingSettings,
    describe,
    is_secret,
    redact_tree,
    redact_url,
)

__all__ = [
    "BOOTSTRAP_ENV",
    "CLIENT_OPTIONS",
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "SETTINGS",
    "BatchSettings",
    "CacheSettings",
    "Config",
    "DeliverySettings",
    "ExecutorSettings",
    "HttpProcessorSettings",
    "KafkaSettings",
    "LimitSettings",
    "LimiterSettings",
    "ObservabilitySettings",
    "ProcessorSettings",
    "RetrySettings",
    "Secret",
    "Setting",
    "TenantLimit",
    "TopicSettings",
    "TracingSettings",
    "describe",
    "is_secret",
    "load_config",
    "load_config_with_sources",
    "redacted",
]

CONFIG_FILE_ENV = "STREAM_SERVICE_CONFIG"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
# STREAM_SERVICE_* variables that are not settings: read by the local-Kafka dev tool, or (like the
# default of processor.http.api_key_env) holding a secret. Any other unknown one is a typo.
_ENV_NOT_SETTINGS = frozenset({CONFIG_FILE_ENV, "STREAM_SERVICE_KAFKA_CACHE", "STREAM_SERVICE_KAFKA_VERSION"})
_SOURCE_RANK = {"default": 0, "file": 1, "env": 2, "flag": 3}
# Settings that no longer exist, and what to set instead: an old config gets this, not "unknown".
_REMOVED = {
    "processor.http.max_retries": (
        "the http processor no longer retries on its own: the engine makes retry.max_attempts "
        "attempts in all (one HTTP request each); set retry.max_attempts instead"
    ),
}
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
OTEL_TRACES_EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
_PROCESSOR_NAME = re.compile(r"resonance|http|echo|python:[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


_BY_ENV = {s.env_var: s for s in SETTINGS.values()}
# Tables of plain values whose entries a flag may set one by one (``-X fetch.min.bytes=1``, or
# ``--set kafka.client_options.fetch.min.bytes=1``), over the table of the earlier sources.
_ENTRY_TABLES = ("kafka.client_options", "processor.options")
CLIENT_OPTIONS = "kafka.client_options"


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
        return redact_url(value)
    try:
        return redact_url(msgspec.json.encode(redact_tree(value)).decode())
    except (TypeError, msgspec.EncodeError):
        return redact_url(repr(value))


def _invalid(name: str, value: object, source: str, allowed: str) -> ConfigError:
    text = source.startswith(("env ", "flag "))
    shown = REDACTED if is_secret(name) and value is not None else redact_url(_show(value, text))
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


def _removed(key: str, source: str) -> ConfigError:
    return ConfigError(f"setting {key} (from {source}) was removed: {_REMOVED[key]}")


def _flatten(table: dict[str, Any], prefix: str, source: str, out: dict[str, _Value]) -> None:
    for name, raw in table.items():
        key = prefix + name
        if key in _REMOVED:
            raise _removed(key, source)
        if key in SETTINGS:
            out[key] = _Value(raw, source, False)
        elif key in SECTIONS:
            if not isinstance(raw, dict):
                raise _invalid(key, raw, source, f"a table [{key}]")
            _flatten(raw, key + ".", source, out)
        else:
            hint = _suggest(key, [*SETTINGS, *SECTIONS])
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
    """Unknown ``STREAM_SERVICE_<SECTION>__<FIELD>`` variables are typos. Names without ``__`` are
    not in the settings' shape and are left alone: Kubernetes injects ``STREAM_SERVICE_PORT``,
    ``STREAM_SERVICE_SERVICE_HOST`` ... into every pod of a namespace with a Service of that name."""
    api_key_env = "processor.http.api_key_env"
    allowed = _ENV_NOT_SETTINGS | {SETTINGS[api_key_env].default, values.get(api_key_env)}
    removed = {ENV_PREFIX + key.upper().replace(".", "__"): key for key in _REMOVED}
    for name in sorted(environ):
        if name in removed:
            raise _removed(removed[name], f"env {name}")
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        if name not in _BY_ENV and name not in allowed:
            hint = _suggest(name, _BY_ENV) or f"; settings are {ENV_PREFIX}<SECTION>__<FIELD>"
            raise ConfigError(f"unknown environment variable {name}: no setting reads it{hint}")


def _resolve_http(environ: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    """Fill the http processor's api_key, base_url and proxy, when no source gave them, from the
    files and conventional variables that hold them (this module alone reads them)."""
    _resolve_api_key(environ, values, sources)
    base_url = "processor.http.base_url"
    if base_url not in values and (url := environ.get(OPENAI_BASE_URL_ENV, "").strip()):
        values[base_url], sources[base_url] = url, f"env {OPENAI_BASE_URL_ENV}"
    _resolve_proxy(environ, values, sources)


def _resolve_api_key(environ: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    """processor.http.api_key: as given, else from api_key_file, else $api_key_env, else $OPENAI_API_KEY.

    Surrounding whitespace is stripped wherever the key came from (a key file ends in a newline).
    """
    key, file_key, env_key = (f"processor.http.{name}" for name in ("api_key", "api_key_file", "api_key_env"))
    if values.get(key) is not None:
        values[key] = values[key].strip()  # whitespace is never part of a key; a trailing newline is common
        return
    if (path := values.get(file_key)) is not None:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _invalid(file_key, path, sources[file_key], f"a readable file ({exc})") from None
        if not secret:
            raise _invalid(file_key, path, sources[file_key], "a file holding the API key (it is empty)")
        values[key], sources[key] = secret, f"file {path}"
        return
    for var in (values.get(env_key, SETTINGS[env_key].default), OPENAI_API_KEY_ENV):
        if secret := environ.get(var, "").strip():
            values[key], sources[key] = secret, f"env {var}"
            return


def _resolve_tracing(environ: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    """tracing.exporter, when no source gave it: the standard ``OTEL_TRACES_EXPORTER`` (one name)."""
    key = "tracing.exporter"
    if key in values or not (raw := environ.get(OTEL_TRACES_EXPORTER_ENV, "").strip()):
        return
    values[key] = _convert(key, _Value(raw.lower(), f"env {OTEL_TRACES_EXPORTER_ENV}", True))
    sources[key] = f"env {OTEL_TRACES_EXPORTER_ENV}"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (comma-separated host names, domain suffixes such as ``.corp`` or
    ``*.corp``, IP addresses, ports ignored, or ``*``) names ``host``."""
    host = host.lower()
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:  # [::1]:8000
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:  # host:port
            entry = entry.partition(":")[0]
        entry = entry.removeprefix("*").lstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def _resolve_proxy(environ: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    """processor.http.proxy, when not given: the conventional proxy variable for the base_url's scheme
    (lower-case name first, as curl and urllib read them), unless ``NO_PROXY`` names its host or
    the host is a loopback address or ``localhost``."""
    proxy = "processor.http.proxy"
    if proxy in values:
        return
    base_url = values.get("processor.http.base_url", SETTINGS["processor.http.base_url"].default)
    url = urllib.parse.urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return  # the processor rejects such a base_url itself, naming it
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if _is_loopback(url.hostname) or _no_proxy(url.hostname, no_proxy):
        return  # a proxy cannot reach this machine's loopback (Go's net/http rule too)
    for name in (f"{url.scheme}_proxy", "all_proxy"):
        for var in (name, name.upper()):
            if value := environ.get(var, "").strip():
                values[proxy], sources[proxy] = value, f"env {var}"
                return


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
    _check_kafka_rules(config, source)
    for key in ("kafka.ssl_cafile", "kafka.ssl_certfile", "kafka.ssl_keyfile"):
        if (path := _get(config, key)) is not None and not os.path.isfile(path):
            raise _invalid(key, path, source(key), "the path of an existing file")
    if not _PROCESSOR_NAME.fullmatch(config.processor.name):
        allowed = "resonance, http, echo, or python:package.module:attribute"
        raise _invalid("processor.name", config.processor.name, source("processor.name"), allowed)
    if config.processor.name == "http" and config.processor.http.timeout_s is not None:
        # The processor's limit must fit in the engine's, or the engine cuts every slow call first.
        ordered("processor.http.timeout_s", "executor.request_timeout_s")


def _check_kafka_rules(config: Config, source: Any) -> None:
    """SASL credentials by mechanism, the OAUTHBEARER token provider, codecs, static membership."""
    k = config.kafka
    protocol = k.security_protocol
    if protocol.startswith("SASL_"):
        when = f"kafka.security_protocol is {protocol} (from {source('kafka.security_protocol')})"
        needed = ["kafka.sasl_mechanism"]
        if k.sasl_mechanism == "OAUTHBEARER":
            needed.append("kafka.sasl_oauth_token_provider")
            when = f"kafka.sasl_mechanism is OAUTHBEARER (from {source('kafka.sasl_mechanism')})"
        elif k.sasl_mechanism is not None:
            needed += ["kafka.sasl_username", "kafka.sasl_password"]
        for key in needed:
            if _get(config, key) is None:
                allowed = SETTINGS[key].allowed.removesuffix(", or none")
                if key == "kafka.sasl_oauth_token_provider":
                    allowed = "file:PATH or python:package.module:attribute"
                raise _invalid(key, None, source(key), f"{allowed} when {when}")
    provider = "kafka.sasl_oauth_token_provider"
    if k.sasl_oauth_token_provider is not None:
        if k.sasl_mechanism != "OAUTHBEARER":
            mechanism = f"{k.sasl_mechanism or 'unset'}, from {source('kafka.sasl_mechanism')}"
            allowed = f"none unless kafka.sasl_mechanism is OAUTHBEARER (it is {mechanism})"
            raise _invalid(provider, k.sasl_oauth_token_provider, source(provider), allowed)
        if (problem := oauth.spec_problem(k.sasl_oauth_token_provider)) is not None:
            raise _invalid(provider, k.sasl_oauth_token_provider, source(provider), problem)
    if (missing := client_options.missing_codec(k.compression_type)) is not None:
        allowed = f"a codec this installation has: {missing}"
        raise _invalid(
            "kafka.compression_type", k.compression_type, source("kafka.compression_type"), allowed
        )
    if k.group_instance_id is not None and not k.group_instance_id.strip():
        allowed = "a name unique to this replica (e.g. its pod name), or none"
        raise _invalid(
            "kafka.group_instance_id", k.group_instance_id, source("kafka.group_instance_id"), allowed
        )


def _entry_table(key: str) -> str | None:
    """The table setting a flag ``<table>.<entry>`` sets one entry of, or None."""
    return next((table for table in _ENTRY_TABLES if key.startswith(table + ".")), None)


def _merge_entries(
    entries: Mapping[str, Mapping[str, tuple[object, str]]],
    values: dict[str, Any],
    sources: dict[str, str],
    entry_sources: dict[str, str],
) -> None:
    """Set table entries given one by one by flags over the table of the earlier sources."""
    for table, items in entries.items():
        merged = dict(values.get(table, SETTINGS[table].default))
        for entry, (raw, label) in items.items():
            merged[entry] = raw
            entry_sources[f"{table}.{entry}"] = label
        labels = ", ".join(label for _, label in items.values())
        values[table] = _convert(table, _Value(merged, labels, False))
        sources[table] = f"{sources[table]}, {labels}" if table in sources else labels


def _normalise_client_options(
    values: dict[str, Any], sources: dict[str, str], entry_sources: dict[str, str]
) -> None:
    """kafka.client_options under aiokafka's keywords, each entry checked against the clients."""
    if CLIENT_OPTIONS not in values:
        return
    normalised: dict[str, Any] = {}
    for name, value in values[CLIENT_OPTIONS].items():
        key = f"{CLIENT_OPTIONS}.{name}"
        try:
            option = client_options.parse(name, value)
        except ValueError as exc:
            raise _invalid(key, value, entry_sources.get(key, sources[CLIENT_OPTIONS]), str(exc)) from None
        normalised[option.keyword] = option.value
    values[CLIENT_OPTIONS] = normalised


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
    entries: dict[str, dict[str, tuple[object, str]]] = {}
    for key, raw in (flags or {}).items():
        label = (flag_labels or {}).get(key, f"flag --set {key}")
        if key in _REMOVED:
            raise _removed(key, label)
        if key not in SETTINGS and (table := _entry_table(key)) is not None:
            entries.setdefault(table, {})[key.removeprefix(table + ".")] = (raw, label)
            continue
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key} (from {label})" + _suggest(key, SETTINGS))
        provided[key] = _Value(raw, label, isinstance(raw, str))
    values = {key: _convert(key, value) for key, value in provided.items()}
    sources = {key: value.source for key, value in provided.items()}
    entry_sources: dict[str, str] = {}
    _merge_entries(entries, values, sources, entry_sources)
    _normalise_client_options(values, sources, entry_sources)
    _check_env_names(environ, values)
    _resolve_http(environ, values, sources)
    _resolve_tracing(environ, values, sources)
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
    result: dict[str, Any] = redact_tree(msgspec.to_builtins(config))
    return result
