"""Choosing, loading and calling the processor: the one place the engine talks to processors.

:func:`load_processor` turns a :class:`ProcessorSpec` into a :class:`LoadedProcessor`, whose
methods give one normalised :class:`~stream_service.processors.base.Output` (or one exception)
per request. :func:`worker_init` and :func:`worker_call` do the same inside a process pool.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from stream_service.errors import ConfigError, PluginError, ProcessorFailed, RequestError, classify
from stream_service.messages import HRV_DIMENSIONS, Request, metadata_problem
from stream_service.processors import plugin
from stream_service.processors.base import Output
from stream_service.processors.echo import EchoProcessor
from stream_service.processors.hrv import HRVExtractor
from stream_service.processors.profiles import ProfileRegistry
from stream_service.processors.writer import HumanResonantWriter
from stream_service.settings import HttpProcessorSettings, ProcessorSettings, Secret

BUILTIN_NAMES = ("resonance", "http", "echo")
# Sync processors of ours that may run on the event loop: CPU-bound, bounded by the prompt limit.
INLINE_SAFE_NAMES = ("resonance", "echo")


class ProcessorSpec(msgspec.Struct, frozen=True):
    """Everything needed to load a processor, in this or another process (it pickles)."""

    name: str = "resonance"  # "resonance" | "http" | "echo" | "python:package.module:attribute"
    hrv: bool = True  # score content with the HRV extractor when the processor gave no hrv_vector
    profiles_dir: str | None = None
    http: HttpProcessorSettings = HttpProcessorSettings()
    options: dict[str, Any] = {}
    trace_requests: bool = False  # tracing on: the http processor sends the current trace context

    @classmethod
    def from_settings(cls, settings: ProcessorSettings, *, trace_requests: bool = False) -> ProcessorSpec:
        return cls(
            name=settings.name,
            hrv=settings.hrv,
            profiles_dir=settings.profiles_dir,
            http=settings.http,
            options=dict(settings.options),
            trace_requests=trace_requests,
        )


def _invalid(raw: object) -> ProcessorFailed:
    return ProcessorFailed(f"processor returned {type(raw).__name__}; expected str or an object with content")


def _hrv_vector(value: object) -> list[float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ProcessorFailed(
            f"processor returned hrv_vector of type {type(value).__name__}; expected 8 floats"
        )
    if len(value) != HRV_DIMENSIONS:
        raise ProcessorFailed(f"processor returned an hrv_vector of {len(value)} values; expected 8")
    vector: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0.0 <= item <= 1.0:
            raise ProcessorFailed(
                f"processor returned hrv_vector value {item!r}; each must be a number in [0, 1]"
            )
        vector.append(float(item))
    return vector


def normalise(raw: object) -> Output:
    """Turn what a processor returned into an Output; raises ``ProcessorFailed`` for anything else.

    Accepted: ``str`` (the content); an Output; a Mapping, or any object with a ``content``
    attribute, holding ``content: str`` and optionally ``hrv_vector`` (8 numbers in [0, 1])
    and ``metadata`` (a mapping with string keys).
    """
    if type(raw) is str:
        return Output(content=raw)
    if isinstance(raw, Output):
        # Output does not validate on construction: check what the processor put in it.
        if not isinstance(raw.content, str):
            raise ProcessorFailed(f"processor returned content of type {type(raw.content).__name__}")
        if raw.metadata and (problem := metadata_problem(raw.metadata)) is not None:
            raise ProcessorFailed(f"processor returned metadata that cannot be published: {problem}")
        if raw.hrv_vector is None:
            return raw
        return Output(content=raw.content, hrv_vector=_hrv_vector(raw.hrv_vector), metadata=raw.metadata)
    if isinstance(raw, str):
        return Output(content=str(raw))
    if isinstance(raw, Mapping):
        content, hrv_vector, metadata = raw.get("content"), raw.get("hrv_vector"), raw.get("metadata")
    elif hasattr(raw, "content"):
        content = raw.content
        hrv_vector = getattr(raw, "hrv_vector", None)
        metadata = getattr(raw, "metadata", None)
    else:
        if inspect.iscoroutine(raw):
            raw.close()  # never awaited: close it so Python does not warn about it later
            raise ProcessorFailed("a synchronous processor returned a coroutine; declare it `async def`")
        raise _invalid(raw)
    if not isinstance(content, str):
        raise ProcessorFailed(f"processor returned content of type {type(content).__name__}; expected str")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, Mapping):
        raise ProcessorFailed(
            f"processor returned metadata of type {type(metadata).__name__}; expected a mapping"
        )
    else:
        metadata = dict(metadata)
        if (problem := metadata_problem(metadata)) is not None:
            raise ProcessorFailed(f"processor returned metadata that cannot be published: {problem}")
    return Output(
        content=content,
        hrv_vector=None if hrv_vector is None else _hrv_vector(hrv_vector),
        metadata=metadata,
    )


class LoadedProcessor:
    """A processor ready to call, whatever its native shape.

    Contract:

    * ``is_async`` — call :meth:`call_async` / :meth:`call_async_batch` (sync processors also
      support them, running in a thread); :meth:`call_sync` works only when it is False.
    * every batch call returns exactly one entry per request, in request order: an Output, or
      the exception for that request (returned, not raised). A batch processor that raises
      yields its exception for every request; one that returns the wrong number of outputs
      yields ``ProcessorFailed`` for every request.
    * outputs are normalised (:func:`normalise`); when ``spec.hrv`` is set, an output without
      ``hrv_vector`` gets one from the HRV extractor; when it is not, ``hrv_vector`` is None.
    * ``profiles`` — the profile names the processor accepts (decoders reject others early),
      or None when it accepts any.
    * ``inline`` — a sync processor of ours that may run on the event loop (it cannot block or
      hang); a plugin never is.
    * ``CancelledError`` and other ``BaseException`` that are not ``Exception`` propagate.
    """

    def __init__(
        self, spec: ProcessorSpec, target: object, shape: plugin.Shape, profiles: frozenset[str] | None
    ) -> None:
        self.spec = spec
        self.target = target
        self.is_async = shape.is_async
        self.is_batch = shape.is_batch
        self.profiles = profiles
        self.inline = not shape.is_async and spec.name in INLINE_SAFE_NAMES
        self._call: Callable[..., Any] = shape.call
        self._extractor = HRVExtractor() if spec.hrv else None

    def _finish(self, raw: object) -> Output:
        output = normalise(raw)
        extractor = self._extractor
        if extractor is None:
            if output.hrv_vector is not None:
                return Output(content=output.content, metadata=output.metadata)
            return output
        if output.hrv_vector is None:
            return Output(
                content=output.content, hrv_vector=extractor(output.content), metadata=output.metadata
            )
        return output

    def _finish_batch(self, raw: object, count: int) -> list[Output | BaseException]:
        if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
            error = ProcessorFailed(
                f"batch processor returned {type(raw).__name__}; expected a list with one output per request"
            )
            return [error] * count
        if len(raw) != count:
            error = ProcessorFailed(f"batch processor returned {len(raw)} outputs for {count} requests")
            return [error] * count
        results: list[Output | BaseException] = []
        for item in raw:
            if isinstance(item, BaseException):  # a batch processor may report one failure in place
                results.append(item)
                continue
            try:
                results.append(self._finish(item))
            except ProcessorFailed as exc:
                results.append(exc)
        return results

    def call_sync(self, requests: Sequence[Request]) -> list[Output | BaseException]:
        if self.is_async:
            raise TypeError("this processor is async: use call_async or call_async_batch")
        if not requests:
            return []  # a batch processor is never called with an empty batch
        call = self._call
        if self.is_batch:
            try:
                raw = call(list(requests))
            except Exception as exc:  # noqa: BLE001 - a processor failure becomes every request's result
                return [exc] * len(requests)
            return self._finish_batch(raw, len(requests))
        finish = self._finish
        results: list[Output | BaseException] = []
        for request in requests:
            try:
                results.append(finish(call(request)))
            except Exception as exc:  # noqa: BLE001 - reported in place of this request's output
                results.append(exc)
        return results

    async def call_async(self, request: Request) -> Output:
        """One request; raises its failure."""
        if self.is_async and not self.is_batch:
            return self._finish(await self._call(request))
        (result,) = await self.call_async_batch([request])
        if isinstance(result, BaseException):
            raise result
        return result

    async def call_async_batch(self, requests: Sequence[Request]) -> list[Output | BaseException]:
        if not requests:
            return []
        if not self.is_async:
            return await asyncio.to_thread(self.call_sync, requests)
        if self.is_batch:
            try:
                raw = await self._call(list(requests))
            except Exception as exc:  # noqa: BLE001 - a processor failure becomes every request's result
                return [exc] * len(requests)
            return self._finish_batch(raw, len(requests))
        results = await asyncio.gather(
            *(self._call_one(request) for request in requests), return_exceptions=True
        )
        return list(results)

    async def _call_one(self, request: Request) -> Output:
        return self._finish(await self._call(request))

    async def aclose(self) -> None:
        """Release what the processor holds (the http connection pool, a plugin's resources)."""
        closer = getattr(self.target, "aclose", None) or getattr(self.target, "close", None)
        if callable(closer):
            result = closer()
            if inspect.isawaitable(result):
                await result


def _declared_profiles(target: object, where: str) -> frozenset[str] | None:
    declared = getattr(target, "profiles", None)
    if declared is None:
        return None
    if isinstance(declared, str) or not all(isinstance(name, str) for name in declared):
        raise PluginError(f"{where}: the processor's profiles attribute must be a collection of names")
    return frozenset(declared)


def _http_processor(spec: ProcessorSpec) -> object:
    """The http processor; its client (httpx, h2) is the optional ``stream-service[http]`` extra."""
    try:
        from stream_service.processors.http import ChatCompletionsProcessor

        # config.py resolved api_key, base_url and proxy from the files and variables (it alone reads them).
        api_key = Secret(spec.http.api_key) if spec.http.api_key else None
        return ChatCompletionsProcessor(
            spec.http,
            ProfileRegistry(spec.profiles_dir),
            api_key=api_key,
            trace_requests=spec.trace_requests,
        )
    except ImportError as exc:  # httpx missing on import, h2 when the client is built
        detail = f"cannot import {exc.name}" if exc.name else str(exc).splitlines()[0]
        raise PluginError(
            f"processor.name = http needs the stream-service[http] extra ({detail}): "
            "pip install 'stream-service[http]'"
        ) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_processor(spec: ProcessorSpec) -> LoadedProcessor:
    """Build the processor ``spec`` names. Raises ``PluginError`` for an unknown name or a
    plugin that cannot be imported, built or called as a processor (or ``processor.name = http``
    without the ``stream-service[http]`` extra), and ``ConfigError`` for invalid profile files or
    an invalid ``processor.http.base_url`` or ``proxy``.
    """
    name = spec.name
    target: object
    if name == "echo":
        target = EchoProcessor()
    elif name == "resonance":
        target = HumanResonantWriter(ProfileRegistry(spec.profiles_dir))
    elif name == "http":
        target = _http_processor(spec)
    elif name.startswith(plugin.PREFIX):
        target = plugin.import_plugin(name, spec.options)
    else:
        raise PluginError(
            f"processor.name {name!r} is unknown; use one of {', '.join(BUILTIN_NAMES)} "
            "or python:package.module:attribute"
        )
    where = f"processor {name!r}"
    return LoadedProcessor(spec, target, plugin.shape_of(target, where), _declared_profiles(target, where))


# --- process-pool entry points: module-level so they pickle by reference -------------------

_worker_processor: LoadedProcessor | None = None
_worker_loop: asyncio.AbstractEventLoop | None = None


def worker_init(spec: ProcessorSpec) -> None:
    """Load the processor once per worker process (``ProcessPoolExecutor(initializer=...)``).

    An async processor gets a private event loop that lives as long as the process, so its
    connection pool survives from one batch to the next.
    """
    global _worker_processor, _worker_loop
    _worker_processor = load_processor(spec)
    if _worker_processor.is_async:
        _worker_loop = asyncio.new_event_loop()


def worker_call(requests: list[Request]) -> list[Output | RequestError]:
    """Process a batch in a worker; failures come back classified (``RequestError`` pickles)."""
    processor = _worker_processor
    if processor is None:
        raise RuntimeError("worker_init did not run in this process; pass it as the pool initializer")
    if _worker_loop is not None:
        results = _worker_loop.run_until_complete(processor.call_async_batch(requests))
    else:
        results = processor.call_sync(requests)
    return [result if isinstance(result, Output) else classify(result) for result in results]
