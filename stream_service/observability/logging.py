"""Structured logging: structlog configured once at startup, JSON lines by default.

Call :func:`configure_logging` once, before the service logs anything. Until then structlog's
defaults apply; nothing in this package binds or configures a logger at import time.

Two routes lead to the same output stream and the same line format:

* structlog loggers (``get_logger(__name__)``): filtered by level *before* any processor runs
  (``make_filtering_bound_logger``), so a disabled ``debug`` call costs one method call;
* stdlib ``logging`` (aiokafka, asyncio): a root handler whose ``ProcessorFormatter`` runs the
  same processors, so every line on stdout is one JSON object.

Every JSON line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``event`` and ``logger``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any, Literal, TextIO, cast

import msgspec
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from stream_service.settings import Secret

__all__ = ["LEVELS", "RepeatFilter", "configure_logging", "get_logger"]

LogFormat = Literal["auto", "json", "console"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_REDACTED = "**********"
REPEAT_WINDOW_S = 5.0  # identical library log lines pass once per window
REPEAT_KEYS_MAX = 10_000  # distinct library messages remembered by the repeat filter
_HANDLER_MARK = "_stream_service_handler"


def get_logger(name: str) -> FilteringBoundLogger:
    """A lazy logger whose lines carry ``logger=name``; safe to call at import time.

    The proxy resolves the configuration on each call, so a later :func:`configure_logging`
    (tests do it once per test) applies to it. Hot code should ``bind()`` once per object
    after configuration and keep the concrete logger.
    """
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def configure_logging(
    *,
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: IO[str] | None = None,
) -> None:
    """Configure structlog and the stdlib root logger to write to ``stream`` (default stdout).

    ``fmt="auto"`` renders for humans when the stream is a TTY and JSON lines otherwise.
    Calling it again replaces the previous configuration (and the handler it installed).
    """
    try:
        min_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r} is not one of {sorted(LEVELS)}") from None
    out = stream if stream is not None else sys.stdout
    console = fmt == "console" or (fmt == "auto" and _isatty(out))

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
    ]
    renderer: Processor
    if console:
        renderer = _escaped(structlog.dev.ConsoleRenderer(colors=_isatty(out)))
        exceptions: list[Processor] = []  # the console renderer prints tracebacks itself
    else:
        renderer = _render_json
        # show_locals=False: frame locals may hold prompts, which never appear in logs.
        exceptions = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        ]

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.processors.StackInfoRenderer(),
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=_NamedWriteLoggerFactory(cast(TextIO, out)),
        # Not cached: a cached proxy would keep writing to the stream of an earlier
        # configuration; concrete loggers from bind() are cheap and keep theirs.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(allow={"repeated"}),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min_level)


class RepeatFilter(logging.Filter):
    """Lets one copy of a repeated library log line through per ``window_s``.

    While a broker is down, aiokafka logs the same connection error thousands of times a
    second; that flood costs CPU and buries everything else. The first occurrence passes at
    once; copies within the window are counted, and the next one after it carries
    ``repeated`` (how many were held back). Only stdlib records (libraries) pass through here;
    our own structlog lines do not.
    """

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        first, held = self._seen.get(key, (None, 0))
        if first is not None and now - first < self._window_s:
            self._seen[key] = (first, held + 1)
            return False
        if len(self._seen) > REPEAT_KEYS_MAX:
            self._seen.clear()  # bounded memory: forget old keys rather than grow without limit
        self._seen[key] = (now, 0)
        if held:
            record.repeated = held
        return True


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that knows its name, so ``add_logger_name`` works as for stdlib loggers."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    """Makes a :class:`_NamedWriteLogger` per ``structlog.get_logger(name)``; one lock per file."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else "stream_service"
        return _NamedWriteLogger(self._file, name)


def _enc_hook(obj: Any) -> Any:
    """Encode what msgspec cannot: secrets redacted, other objects as text."""
    if isinstance(obj, Secret):
        return _REDACTED
    if isinstance(obj, str):  # other str subclasses
        return str.__str__(obj)
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    return repr(obj)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


_LEADING_KEYS = ("timestamp", "level", "event", "logger")


def _render_json(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    # The fixed keys first, so a human tailing the log reads when/what before the details.
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    event_dict = ordered
    try:
        return _ENCODER.encode(event_dict).decode("utf-8")
    except (TypeError, ValueError, msgspec.EncodeError):
        # Non-string keys, text that is not valid Unicode (a lone surrogate in a processor's error)
        # or other shapes msgspec rejects: degrade rather than lose the line, or raise into the
        # code that logged it. The standard library escapes what msgspec refuses.
        safe = {str(k): v if _is_plain(v) else _enc_hook(v) for k, v in event_dict.items()}
        return json.dumps(safe, ensure_ascii=True, default=repr)


def _escaped(render: Processor) -> Processor:
    """``render``, with text that is not valid Unicode escaped so writing the line cannot fail."""

    def escaped(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        line = render(logger, method, event_dict)
        assert isinstance(line, str)
        return line.encode("utf-8", "backslashreplace").decode("utf-8")

    return escaped


def _is_plain(value: object) -> bool:
    return value is None or type(value) in (str, int, float, bool)
