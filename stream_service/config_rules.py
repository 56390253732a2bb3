"""Configuration rules that span fields (msgspec checks each field on its own).

Run by :func:`stream_service.config.load_config` once every value is converted; each broken rule
raises :class:`ConfigError` blaming the setting from the later source (the one just changed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from stream_service import client_options, oauth
from stream_service.config_values import invalid, show
from stream_service.settings import SETTINGS, Config

__all__ = ["check_rules"]

_SOURCE_RANK = {"default": 0, "file": 1, "env": 2, "flag": 3}
_PROCESSOR_NAME = re.compile(r"resonance|http|echo|python:[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_rules(config: Config, sources: Mapping[str, str]) -> None:
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
        allowed = f"a value {relation} {other} ({show(_get(config, other), False)}, from {source(other)})"
        raise invalid(blame, _get(config, blame), source(blame), allowed)

    # initial_size is a starting point, clamped into [min_size, max_size]: lowering max_size alone
    # must not force the operator to lower initial_size too.
    ordered("batch.min_size", "batch.max_size")
    ordered("retry.initial_backoff_s", "retry.max_backoff_s")
    ordered("kafka.heartbeat_interval_ms", "kafka.session_timeout_ms", strict=True)
    _check_kafka_rules(config, source)
    for key in ("kafka.ssl_cafile", "kafka.ssl_certfile", "kafka.ssl_keyfile"):
        if (path := _get(config, key)) is not None and not os.path.isfile(path):
            raise invalid(key, path, source(key), "the path of an existing file")
    if not _PROCESSOR_NAME.fullmatch(config.processor.name):
        allowed = "resonance, http, echo, or python:package.module:attribute"
        raise invalid("processor.name", config.processor.name, source("processor.name"), allowed)
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
                raise invalid(key, None, source(key), f"{allowed} when {when}")
    provider = "kafka.sasl_oauth_token_provider"
    if k.sasl_oauth_token_provider is not None:
        if k.sasl_mechanism != "OAUTHBEARER":
            mechanism = f"{k.sasl_mechanism or 'unset'}, from {source('kafka.sasl_mechanism')}"
            allowed = f"none unless kafka.sasl_mechanism is OAUTHBEARER (it is {mechanism})"
            raise invalid(provider, k.sasl_oauth_token_provider, source(provider), allowed)
        if (problem := oauth.spec_problem(k.sasl_oauth_token_provider)) is not None:
            raise invalid(provider, k.sasl_oauth_token_provider, source(provider), problem)
    if (missing := client_options.missing_codec(k.compression_type)) is not None:
        allowed = f"a codec this installation has: {missing}"
        raise invalid("kafka.compression_type", k.compression_type, source("kafka.compression_type"), allowed)
    if k.group_instance_id is not None and not k.group_instance_id.strip():
        allowed = "a name unique to this replica (e.g. its pod name), or none"
        raise invalid(
            "kafka.group_instance_id", k.group_instance_id, source("kafka.group_instance_id"), allowed
        )
