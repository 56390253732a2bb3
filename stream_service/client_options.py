"""aiokafka's own settings, passed through: ``kafka.client_options`` (``-X key=value``), and codecs.

An entry names a keyword argument of ``AIOKafkaConsumer`` or ``AIOKafkaProducer``, in aiokafka's
snake_case (``fetch_min_bytes``) or in Kafka's dotted form (``fetch.min.bytes``, mapped to the
snake_case name; a few Kafka names differ and are mapped explicitly, e.g. ``batch.size``). Its
value is converted to the type of the keyword's default (text is parsed: ``1024``, ``true``).
Each client gets the entries its class accepts: a consumer-only option never reaches a producer.

Keywords that a setting owns (``fetch_max_bytes`` is ``kafka.fetch_max_bytes``) or that the
service fixes for its guarantees (``enable_auto_commit``, ``acks``, ``enable_idempotence`` ...)
are refused, naming what to use instead: a pass-through must not undo what the service checks.

No I/O: :mod:`stream_service.config` validates entries with :func:`parse`, and
:mod:`stream_service.clients` applies them with :func:`for_client`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["ClientKind", "ClientOption", "for_client", "missing_codec", "normalise", "parse"]

ClientKind = Literal["consumer", "producer", "admin"]
_CLASSES: dict[ClientKind, Any] = {
    "consumer": AIOKafkaConsumer,
    "producer": AIOKafkaProducer,
    "admin": AIOKafkaAdminClient,
}

# Kafka's name -> aiokafka's keyword, where it is not the dotted name with underscores.
KAFKA_NAMES: dict[str, str] = {
    "batch.size": "max_batch_size",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "sasl.oauthbearer.token.provider": "sasl_oauth_token_provider",
}
# Keywords a setting of ours owns: set that setting instead (it is validated and documented).
OWNED: dict[str, str] = {
    "bootstrap_servers": "kafka.bootstrap_servers",
    "client_id": "kafka.client_id",
    "security_protocol": "kafka.security_protocol",
    "sasl_mechanism": "kafka.sasl_mechanism",
    "sasl_plain_username": "kafka.sasl_username",
    "sasl_plain_password": "kafka.sasl_password",
    "sasl_oauth_token_provider": "kafka.sasl_oauth_token_provider",
    "ssl_context": "kafka.ssl_cafile, kafka.ssl_certfile and kafka.ssl_keyfile",
    "request_timeout_ms": "kafka.request_timeout_ms",
    "session_timeout_ms": "kafka.session_timeout_ms",
    "heartbeat_interval_ms": "kafka.heartbeat_interval_ms",
    "max_poll_interval_ms": "kafka.max_poll_interval_ms",
    "rebalance_timeout_ms": "kafka.max_poll_interval_ms",
    "fetch_max_bytes": "kafka.fetch_max_bytes",
    "max_partition_fetch_bytes": "kafka.max_partition_fetch_bytes",
    "max_request_size": "kafka.producer_max_request_size",
    "linger_ms": "kafka.producer_linger_ms",
    "auto_offset_reset": "kafka.auto_offset_reset",
    "compression_type": "kafka.compression_type",
    "group_instance_id": "kafka.group_instance_id",
    "group_id": "topics.group_id",
    "transactional_id": "delivery.transactional_id_prefix",
    "isolation_level": "delivery.guarantee",
}
# Keywords the service fixes, and why.
FIXED: dict[str, str] = {
    "enable_auto_commit": "the service commits offsets itself, behind acknowledged outputs",
    "auto_commit_interval_ms": "the service commits offsets itself (delivery.commit_interval_s)",
    "acks": "outputs are written with acks=all",
    "enable_idempotence": "the producer is always idempotent",
    "max_batch_size": "a produce batch must fit in one request (kafka.producer_max_request_size)",
    "exclude_internal_topics": "the service subscribes to one named topic",
}
# Keywords whose default is None, so it cannot tell their type.
_TYPES_OF_NONE_DEFAULTS: dict[str, type] = {
    "max_poll_records": int,
    "client_rack": str,
    "api_version": str,
    "sasl_kerberos_domain_name": str,
}
_PLAIN_TYPES = (bool, int, float, str)
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


class ClientOption(NamedTuple):
    """One validated entry: aiokafka's keyword, the converted value, and the clients that take it."""

    keyword: str
    value: bool | int | float | str
    clients: frozenset[ClientKind]


@cache
def _keywords(kind: ClientKind) -> dict[str, Any]:
    """The keyword arguments of one client class, with their defaults."""
    parameters = inspect.signature(_CLASSES[kind]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def normalise(key: str) -> str:
    """aiokafka's keyword for ``key``, given in snake_case or in Kafka's dotted form."""
    key = key.strip()
    return KAFKA_NAMES.get(key, key.replace(".", "_").replace("-", "_").lower())


def _kind_of(keyword: str) -> type | None:
    for kind in ("consumer", "producer"):
        default = _keywords(kind).get(keyword, inspect.Parameter.empty)
        if default is None:
            return _TYPES_OF_NONE_DEFAULTS.get(keyword)
        if isinstance(default, _PLAIN_TYPES):
            return type(default)
    return None


def _convert(value: object, wanted: type) -> bool | int | float | str:
    if wanted is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("true or false")
    if wanted is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError("an integer")
    if wanted is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError("a number")
    if isinstance(value, str):
        return value
    raise ValueError("a string")


def parse(key: str, value: object) -> ClientOption:
    """Validate one entry; raises ValueError whose text completes "expected ..." in one line."""
    keyword = normalise(key)
    if keyword in OWNED:
        raise ValueError(f"no pass-through: {keyword} is the setting {OWNED[keyword]}, set that instead")
    if keyword in FIXED:
        raise ValueError(f"no pass-through: {keyword} is fixed ({FIXED[keyword]})")
    clients = frozenset(kind for kind in _CLASSES if keyword in _keywords(kind))
    if not clients & {"consumer", "producer"}:
        known = sorted({*_keywords("consumer"), *_keywords("producer")} - set(OWNED) - set(FIXED))
        close = difflib.get_close_matches(keyword, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else " (see aiokafka's AIOKafkaConsumer/Producer)"
        raise ValueError(f"a keyword of aiokafka's consumer or producer{hint}")
    wanted = _kind_of(keyword)
    if wanted is None:
        raise ValueError(f"no pass-through: {keyword} takes an object, not a plain value")
    try:
        converted = _convert(value, wanted)
    except ValueError as exc:
        where = "/".join(sorted(clients - {"admin"}))
        raise ValueError(f"{exc} for aiokafka's {where} {keyword}") from None
    return ClientOption(keyword, converted, clients)


def for_client(kind: ClientKind, options: Mapping[str, Any], **fixed: Any) -> dict[str, Any]:
    """The entries of ``options`` (connection options and parsed pass-throughs) that a ``kind``
    client accepts, with ``fixed`` over them (what the caller sets itself always wins)."""
    keywords = _keywords(kind)
    return {**{key: value for key, value in options.items() if key in keywords}, **fixed}


def missing_codec(compression_type: str) -> str | None:
    """Why aiokafka cannot compress with ``compression_type`` here, or None when it can."""
    from aiokafka import codec

    checks = {
        "gzip": codec.has_gzip,
        "snappy": codec.has_snappy,
        "lz4": codec.has_lz4,
        "zstd": codec.has_zstd,
    }
    check = checks.get(compression_type)
    if check is None or check():
        return None
    return (
        f"{compression_type} needs the cramjam package, which is not installed "
        "(pip install 'stream-service[compression]'); gzip needs nothing"
    )
