"""Tests for stream_service.observability.logging: JSON lines, levels, stdlib routing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from stream_service.config import Secret
from stream_service.observability.logging import configure_logging, get_logger


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_structlog_lines_are_json_with_standard_fields() -> None:
    """Every structlog line is one JSON object with timestamp (UTC), level, event and logger."""
    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)
    get_logger("stream_service.test").info("thing.happened", answer=42)
    (line,) = _lines(out)
    assert line["event"] == "thing.happened"
    assert line["level"] == "info"
    assert line["logger"] == "stream_service.test"
    assert line["answer"] == 42
    assert line["timestamp"].endswith("Z")


def test_level_filters_before_formatting() -> None:
    """Calls below the configured level produce nothing."""
    out = io.StringIO()
    configure_logging(level="warning", stream=out, fmt="json")
    log = get_logger("x")
    log.debug("hidden")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in _lines(out)] == ["shown"]


def test_stdlib_logging_is_routed_through_the_same_format() -> None:
    """A stdlib logger (as aiokafka uses) writes the same JSON shape, with its own name."""
    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed for group %s", "g1")
    (line,) = _lines(out)
    assert line["event"] == "Heartbeat failed for group g1"
    assert line["level"] == "warning"
    assert line["logger"] == "aiokafka.consumer"
    assert "timestamp" in line


def test_reconfiguring_replaces_the_previous_stream() -> None:
    """A second configure_logging call sends lines only to the new stream, once."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging(fmt="json", stream=first)
    configure_logging(fmt="json", stream=second)
    get_logger("x").info("structlog.line")
    logging.getLogger("lib").info("stdlib.line")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["structlog.line", "stdlib.line"]


def test_exceptions_are_structured_without_locals() -> None:
    """log.exception records the traceback as data, without frame locals (they may hold prompts)."""
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    secret_prompt = "tell me the launch codes"  # a local in the failing frame
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("x").exception("it.failed")
    text = out.getvalue()
    (line,) = _lines(out)
    assert line["exception"][0]["exc_type"] == "ValueError"
    assert secret_prompt not in text


def test_secrets_and_unusual_values_are_rendered_safely() -> None:
    """Secret values are redacted, and values msgspec cannot encode still give a JSON line."""
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    get_logger("x").info("odd.values", password=Secret("hunter2"), obj=object(), keys={(1, 2): 3})
    text = out.getvalue()
    (line,) = _lines(out)
    assert "hunter2" not in text
    assert line["password"] == "**********"
    assert line["event"] == "odd.values"


def test_console_format_is_not_json() -> None:
    """fmt=console renders for humans."""
    out = io.StringIO()
    configure_logging(fmt="console", stream=out)
    get_logger("x").info("hello.console", n=1)
    text = out.getvalue()
    assert "hello.console" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_auto_format_is_json_when_not_a_tty() -> None:
    """fmt=auto on a non-TTY stream writes JSON."""
    out = io.StringIO()
    configure_logging(fmt="auto", stream=out)
    get_logger("x").info("auto.line")
    assert _lines(out)[0]["event"] == "auto.line"


def test_unknown_level_is_rejected() -> None:
    """An unknown level name raises ValueError naming the allowed levels."""
    with pytest.raises(ValueError, match="not one of"):
        configure_logging(level="loud")


def test_repeated_library_lines_pass_once_per_window() -> None:
    """A library message repeated within the window is held back, and the next copy says how many were."""
    from stream_service.observability.logging import RepeatFilter

    now = [0.0]
    repeat = RepeatFilter(window_s=5.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, (), None)

    assert repeat.filter(record("Unable connect to node 1"))
    held = [repeat.filter(record("Unable connect to node 1")) for _ in range(100)]
    assert not any(held)
    assert repeat.filter(record("another message")), "a different message is not held back"
    now[0] = 5.0
    after = record("Unable connect to node 1")
    assert repeat.filter(after)
    assert after.repeated == 100  # type: ignore[attr-defined]
