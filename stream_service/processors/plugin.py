"""Loading ``python:package.module:attribute`` processors and checking their shape."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from stream_service.errors import PluginError

PREFIX = "python:"


class Shape(NamedTuple):
    """How the engine calls a processor: the callable, and whether it is async and/or batch."""

    call: Callable[..., Any]
    is_async: bool
    is_batch: bool


def import_plugin(name: str, options: Mapping[str, Any]) -> object:
    """Import the attribute named by ``python:package.module:attribute``; if it is a factory
    (a class, or a callable with ``factory = True``) call it with ``options`` and return what
    it built. Raises ``PluginError`` naming ``name`` and what is wrong.
    """
    where = f"processor {name!r}"
    module_name, sep, attribute = name.removeprefix(PREFIX).partition(":")
    if not sep or not module_name or not attribute:
        raise PluginError(f"{where}: expected the form python:package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{where}: cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any error while importing user code is a load failure
        raise PluginError(f"{where}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise PluginError(f"{where}: module {module_name!r} has no attribute {attribute!r}") from None
    if is_factory(target):
        return _build(target, options, where)
    if options:
        raise PluginError(
            f"{where}: processor.options is set but {attribute!r} is not a factory; "
            "mark it with factory = True (or make it a class) to receive the options"
        )
    return target


def is_factory(target: object) -> bool:
    return inspect.isclass(target) or getattr(target, "factory", False) is True


def _build(factory: Any, options: Mapping[str, Any], where: str) -> object:
    parameters = _parameters(factory)
    takes_options = parameters is None or parameters.accepts_positional
    if parameters is not None:
        _reject_extra_required(parameters, where, "the factory", "the options dict")
        if not takes_options and options:
            raise PluginError(f"{where}: the factory takes no arguments but processor.options is set")
    try:
        built = factory(dict(options)) if takes_options else factory()
    except Exception as exc:  # noqa: BLE001 - any error in user code building the processor
        raise PluginError(f"{where}: the factory raised {type(exc).__name__}: {exc}") from exc
    if built is None:
        raise PluginError(f"{where}: the factory returned None instead of a processor")
    return built


class _Parameters(NamedTuple):
    required_positional: list[str]
    accepts_positional: bool
    required_keyword_only: list[str]


def _parameters(function: Any) -> _Parameters | None:
    """What a callable's signature demands; ``None`` when it cannot be read (some builtins),
    in which case the first call decides.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    required: list[str] = []
    keyword_only: list[str] = []
    accepts_positional = False
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            accepts_positional = True
            if parameter.default is parameter.empty:
                required.append(parameter.name)
        elif parameter.kind is parameter.VAR_POSITIONAL:
            accepts_positional = True
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            keyword_only.append(parameter.name)
    return _Parameters(required, accepts_positional, keyword_only)


def _reject_extra_required(parameters: _Parameters, where: str, what: str, argument: str) -> None:
    if len(parameters.required_positional) > 1:
        names = ", ".join(parameters.required_positional)
        raise PluginError(
            f"{where}: {what} requires {len(parameters.required_positional)} positional arguments "
            f"({names}); it must take exactly one: {argument}"
        )
    if parameters.required_keyword_only:
        names = ", ".join(parameters.required_keyword_only)
        raise PluginError(f"{where}: {what} requires keyword-only arguments ({names}) the engine cannot pass")


def _check_signature(function: object, where: str, what: str, argument: str) -> None:
    parameters = _parameters(function)
    if parameters is None:
        return
    if not parameters.accepts_positional:
        raise PluginError(f"{where}: {what} takes no arguments; it must take exactly one: {argument}")
    _reject_extra_required(parameters, where, what, argument)


def _is_async(function: object) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    if inspect.isfunction(function) or inspect.ismethod(function):
        return False
    # An instance: its class's __call__ says whether calling it gives a coroutine.
    return inspect.iscoroutinefunction(type(function).__call__)


def shape_of(target: object, where: str) -> Shape:
    """Classify a processor object; raises ``PluginError`` if it is not one.

    An object with a callable ``process_batch`` is a batch processor; otherwise it must be
    callable with one positional argument, and is a batch processor if ``batch = True``.
    Async-ness comes from ``async def`` on the function, method or instance ``__call__``.
    """
    process_batch = getattr(target, "process_batch", None)
    if callable(process_batch):
        _check_signature(process_batch, where, "process_batch", "the list of requests")
        return Shape(process_batch, _is_async(process_batch), True)
    if not callable(target):
        raise PluginError(
            f"{where}: a {type(target).__name__} is not a processor; "
            "expected a callable taking a Request or an object with process_batch"
        )
    is_batch = getattr(target, "batch", False) is True
    _check_signature(target, where, "the callable", "the list of requests" if is_batch else "the request")
    return Shape(target, _is_async(target), is_batch)
