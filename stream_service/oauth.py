"""OAUTHBEARER token providers: what ``kafka.sasl_oauth_token_provider`` names.

aiokafka asks an :class:`aiokafka.abc.AbstractTokenProvider` for a token at every SASL
handshake (each new connection, and each re-authentication). The setting names one of:

* ``file:PATH`` - the token is the content of a file, read again at every handshake (surrounding
  whitespace stripped), so whatever writes it (a sidecar, a cron job, a test) can rotate it;
* ``python:package.module:attribute`` - your code: an object with a ``token()`` method, a class
  built once without arguments, or a function returning the token. ``token()`` may be sync
  (it then runs in a thread, as a signer may do network I/O) or async, and may come with an
  ``extensions()`` method (SASL extensions, e.g. a Confluent logical cluster).

For Amazon MSK with IAM, wrap the ``aws-msk-iam-sasl-signer-python`` package's generator in a
function (docs/configuration.md shows the whole file); no AWS dependency is needed otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider

from stream_service.errors import ConfigError

__all__ = ["FILE_PREFIX", "PYTHON_PREFIX", "FileTokenProvider", "load_token_provider", "spec_problem"]

FILE_PREFIX = "file:"
PYTHON_PREFIX = "python:"
_SETTING = "kafka.sasl_oauth_token_provider"


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """The token in a file, read at every handshake (so it can be rotated without a restart)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    async def token(self) -> str:
        text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        if not (token := text.strip()):
            raise ValueError(f"{_SETTING}: the token file {self.path} is empty")
        return token


class _CodeTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """Your ``token`` callable (sync in a thread, or async) as the provider aiokafka insists on."""

    def __init__(self, token: Any, extensions: Any = None) -> None:
        self._token = token
        self._extensions = extensions

    async def token(self) -> str:
        if inspect.iscoroutinefunction(self._token):
            result = await self._token()
        else:
            result = await asyncio.to_thread(self._token)
            if inspect.isawaitable(result):
                result = await result
        if not isinstance(result, str) or not result:
            raise TypeError(f"{_SETTING}: token() returned {type(result).__name__}, expected a non-empty str")
        return result

    def extensions(self) -> dict[str, str]:
        return dict(self._extensions()) if callable(self._extensions) else {}


def spec_problem(spec: str) -> str | None:
    """What is wrong with the form of a provider name ("expected ..."), or None; imports nothing."""
    if spec.startswith(FILE_PREFIX):
        path = spec.removeprefix(FILE_PREFIX)
        return None if Path(path).is_file() else f"file:PATH naming an existing file ({path} is not one)"
    module, sep, attribute = spec.removeprefix(PYTHON_PREFIX).partition(":")
    if spec.startswith(PYTHON_PREFIX) and sep and module and attribute:
        return None
    return "file:PATH or python:package.module:attribute"


def load_token_provider(spec: str) -> AbstractTokenProvider:
    """The provider ``spec`` names; raises ConfigError (one line, naming the setting) when it
    cannot be loaded."""
    if (problem := spec_problem(spec)) is not None:
        raise ConfigError(f"invalid setting {_SETTING} = {spec}: expected {problem}")
    if spec.startswith(FILE_PREFIX):
        return FileTokenProvider(spec.removeprefix(FILE_PREFIX))
    module_name, _, attribute = spec.removeprefix(PYTHON_PREFIX).partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
        if inspect.isclass(target):
            target = target()
    except Exception as exc:  # noqa: BLE001 - any failure of user code while loading it
        raise ConfigError(f"{_SETTING} = {spec}: cannot load it: {type(exc).__name__}: {exc}") from None
    if isinstance(target, AbstractTokenProvider):
        return target
    if callable(getattr(target, "token", None)):
        return _CodeTokenProvider(target.token, getattr(target, "extensions", None))
    if callable(target):
        return _CodeTokenProvider(target)
    raise ConfigError(f"{_SETTING} = {spec}: expected an object with token(), a class or a function")
