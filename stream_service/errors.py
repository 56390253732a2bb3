"""The error hierarchy of stream_service.

::

    StreamServiceError                    base; never raised itself
    ├── ConfigError                       a setting is invalid: names the setting, its source, what is allowed
    ├── StartupError                      the service cannot start: broker unreachable, topic missing
    ├── PluginError                       a processor cannot be loaded: import error, wrong signature
    ├── ToolError                         an operator tool cannot do what was asked: topic missing, bad bound
    ├── PublishError            retriable an output record could not be written to Kafka
    └── RequestError                      one request failed; becomes an ErrorRecord
        ├── InvalidRequest                 validation   bad bytes, bad schema, oversized
        ├── UnknownProfile                 profile      profile_name names no known profile
        ├── RateLimited          retriable rate_limit   a quota rejected it (or a 429 from a model endpoint)
        ├── ProcessingTimeout    retriable timeout      the processor exceeded its time budget
        ├── ResourceExhausted              memory       the processor ran out of memory
        ├── UpstreamUnavailable  retriable connection   a model endpoint or dependency could not be reached
        ├── WorkerCrashed        retriable crash        the worker process died while running it
        ├── OutputTooLarge                 too_large    the result is larger than the producer may send
        └── ProcessorFailed                unknown      the processor raised anything else

``RequestError.error_type`` is the value written to ``ErrorRecord.error_type``;
``retriable`` tells the executor whether another attempt may succeed.
:func:`classify` maps any exception a processor raises onto this tree.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Literal

ErrorType = Literal[
    "validation",
    "profile",
    "rate_limit",
    "timeout",
    "memory",
    "connection",
    "crash",
    "too_large",
    "unknown",
]


class StreamServiceError(Exception):
    """Base class of every error stream_service raises on purpose."""


class ConfigError(StreamServiceError):
    """A setting is invalid. The message is one line naming the setting, its source and what is allowed."""


class StartupError(StreamServiceError):
    """The service cannot start (broker unreachable, topic missing); the message says what to fix."""


class PluginError(StreamServiceError):
    """A processor could not be loaded or has the wrong signature."""


class ToolError(StreamServiceError):
    """An operator tool cannot do what was asked (topic missing, bad time bound); the message says why."""


class PublishError(StreamServiceError):
    """An output record could not be written; the engine retries it and holds the offset back."""

    retriable: ClassVar[bool] = True


class RequestError(StreamServiceError):
    """One request failed. Carries the ``error_type`` published in its ErrorRecord."""

    error_type: ClassVar[ErrorType] = "unknown"
    retriable: ClassVar[bool] = False


class InvalidRequest(RequestError):
    """The record is not a valid request: undecodable, wrong schema, or over a size limit."""

    error_type = "validation"


class UnknownProfile(RequestError):
    """``profile_name`` names no profile the processor knows."""

    error_type = "profile"


class RateLimited(RequestError):
    """A quota rejected the request, or a model endpoint answered 429."""

    error_type = "rate_limit"
    retriable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProcessingTimeout(RequestError):
    """The processor exceeded its time budget."""

    error_type = "timeout"
    retriable = True


class ResourceExhausted(RequestError):
    """The processor ran out of memory."""

    error_type = "memory"


class UpstreamUnavailable(RequestError):
    """A dependency of the processor (a model endpoint) could not be reached or answered 5xx."""

    error_type = "connection"
    retriable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class WorkerCrashed(RequestError):
    """The worker process died while running the request; it was replaced."""

    error_type = "crash"
    retriable = True


class OutputTooLarge(RequestError):
    """The encoded result exceeds the producer's maximum request size."""

    error_type = "too_large"


class ProcessorFailed(RequestError):
    """The processor raised an exception stream_service does not classify further."""

    error_type = "unknown"


class RetriableError(ProcessorFailed):
    """Raise this from a processor to ask for another attempt of an otherwise unknown failure."""

    retriable = True


def classify(exc: BaseException) -> RequestError:
    """Map any exception raised while processing onto the RequestError tree (never raises)."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ProcessingTimeout(str(exc) or "the processor did not finish within its timeout")
    if isinstance(exc, MemoryError):
        return ResourceExhausted(str(exc) or "the processor ran out of memory")
    if isinstance(exc, ConnectionError):
        return UpstreamUnavailable(f"{type(exc).__name__}: {exc}")
    return ProcessorFailed(f"{type(exc).__name__}: {exc}")
