"""Configuration values: one provided value converted into its setting's type, or one line saying why not.

Pure functions of the value and its source (no environment, no files): :mod:`stream_service.config`
reads the sources and calls :func:`convert` on each value; :mod:`stream_service.config_rules`
uses :func:`invalid` for the rules that span fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any, NamedTuple, get_args

import msgspec
import msgspec.inspect as mi

from stream_service.errors import ConfigError
from stream_service.settings import REDACTED, SETTINGS, describe, is_secret, redact_tree, redact_url

__all__ = ["Value", "convert", "invalid", "show", "suggest"]


class Value(NamedTuple):
    """One provided value and where it came from."""

    raw: object
    source: str  # "file <path>", "env VAR", "flag --name"
    text: bool  # typed as text (environment, command line): parse it, convert it leniently


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``; did you mean X?`` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def show(value: object, text: bool) -> str:
    """A value as an error message shows it: URLs and secrets redacted."""
    if value is None:
        return "none"
    if text and isinstance(value, str):
        return redact_url(value)
    try:
        return redact_url(msgspec.json.encode(redact_tree(value)).decode())
    except (TypeError, msgspec.EncodeError):
        return redact_url(repr(value))


def invalid(name: str, value: object, source: str, allowed: str) -> ConfigError:
    """The one-line error for ``name = value`` from ``source``, saying what is allowed."""
    text = source.startswith(("env ", "flag "))
    shown = REDACTED if is_secret(name) and value is not None else redact_url(show(value, text))
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
    exc: msgspec.ValidationError, name: str, raw: object, info: mi.Type, value: Value
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
    return invalid(name, node, value.source, allowed)


def convert(key: str, value: Value) -> Any:
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
