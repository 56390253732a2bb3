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
and are re-exported here; the command-line flags in :mod:`stream_service.config_cli`; converting
one value in :mod:`stream_service.config_values`; the rules that span fields in
:mod:`stream_service.config_rules`. Only this module reads the environment and files.

Secrets (any field named ``*password``, ``*secret``, ``*api_key``, ``*token``) are shown as
``***`` by ``repr()``, :func:`redacted` and ``stream-service config``. ``msgspec.to_builtins``
on a Config does reveal them: use :func:`redacted` to show a configuration.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from stream_service import client_options
from stream_service.config_rules import check_rules
from stream_service.config_values import Value, convert, invalid, suggest
from stream_service.errors import ConfigError
from stream_service.settings import (
    ENV_PREFIX,
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
_BY_ENV = {s.env_var: s for s in SETTINGS.values()}
# Tables of plain values whose entries a flag may set one by one (``-X fetch.min.bytes=1``, or
# ``--set kafka.client_options.fetch.min.bytes=1``), over the table of the earlier sources.
_ENTRY_TABLES = ("kafka.client_options", "processor.options")
CLIENT_OPTIONS = "kafka.client_options"


def _read_file(path: str, origin: str) -> dict[str, Value]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (from {origin})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} (from {origin}): {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    out: dict[str, Value] = {}
    _flatten(data, "", f"file {path}", out)
    return out


def _removed(key: str, source: str) -> ConfigError:
    return ConfigError(f"setting {key} (from {source}) was removed: {_REMOVED[key]}")


def _flatten(table: dict[str, Any], prefix: str, source: str, out: dict[str, Value]) -> None:
    for name, raw in table.items():
        key = prefix + name
        if key in _REMOVED:
            raise _removed(key, source)
        if key in SETTINGS:
            out[key] = Value(raw, source, False)
        elif key in SECTIONS:
            if not isinstance(raw, dict):
                raise invalid(key, raw, source, f"a table [{key}]")
            _flatten(raw, key + ".", source, out)
        else:
            hint = suggest(key, [*SETTINGS, *SECTIONS])
            raise ConfigError(f"unknown setting {key} (from {source}){hint}")


def _read_env(environ: Mapping[str, str]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    if BOOTSTRAP_ENV in environ:  # the conventional name; STREAM_SERVICE_KAFKA__BOOTSTRAP_SERVERS wins
        out["kafka.bootstrap_servers"] = Value(environ[BOOTSTRAP_ENV], f"env {BOOTSTRAP_ENV}", True)
    for name, raw in environ.items():
        if (setting := _BY_ENV.get(name)) is not None:
            out[setting.key] = Value(raw, f"env {name}", True)
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
            hint = suggest(name, _BY_ENV) or f"; settings are {ENV_PREFIX}<SECTION>__<FIELD>"
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
            raise invalid(file_key, path, sources[file_key], f"a readable file ({exc})") from None
        if not secret:
            raise invalid(file_key, path, sources[file_key], "a file holding the API key (it is empty)")
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
    values[key] = convert(key, Value(raw.lower(), f"env {OTEL_TRACES_EXPORTER_ENV}", True))
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
        values[table] = convert(table, Value(merged, labels, False))
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
            raise invalid(key, value, entry_sources.get(key, sources[CLIENT_OPTIONS]), str(exc)) from None
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
    provided: dict[str, Value] = {}
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
            raise ConfigError(f"unknown setting {key} (from {label})" + suggest(key, SETTINGS))
        provided[key] = Value(raw, label, isinstance(raw, str))
    values = {key: convert(key, value) for key, value in provided.items()}
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
    check_rules(config, sources)
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
