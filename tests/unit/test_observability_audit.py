"""Tests for stream_service.observability.audit: stable event names, fields, no prompts in clear."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from stream_service.observability import audit
from stream_service.observability.logging import configure_logging, get_logger

PROMPT = "zebra-quokka-7731 please summarise my medical history"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=out)
    yield out
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_fingerprint_is_length_and_truncated_sha256() -> None:
    """fingerprint gives the character count and the first 16 hex chars of the SHA-256."""
    fp = audit.fingerprint("héllo")
    assert fp == {"len": 5, "sha256": hashlib.sha256("héllo".encode()).hexdigest()[:16]}


def test_fingerprint_accepts_lone_surrogates() -> None:
    """A prompt with a lone surrogate (possible from JSON escapes) still fingerprints."""
    assert audit.fingerprint("a\udc80")["len"] == 2


def test_batch_completed_line(captured: io.StringIO) -> None:
    """batch.completed carries id, size, grouped partitions, tenants, outcomes and latency."""
    log = get_logger("stream_service.engine")
    audit.batch_completed(
        log,
        batch_id=7,
        size=5,
        partitions=[("requests", 2), ("requests", 0), ("requests", 2)],
        tenants={"acme": 3, "globex": 2},
        outcomes={"success": 4, "error": 1},
        latency_s=0.01234567,
    )
    (line,) = _lines(captured)
    assert line["event"] == "batch.completed"
    assert line["level"] == "info"
    assert line["batch_id"] == 7
    assert line["size"] == 5
    assert line["partitions"] == {"requests": [0, 2, 2]}
    assert line["tenants"] == {"acme": 3, "globex": 2}
    assert line["tenant_count"] == 2
    assert line["outcomes"] == {"success": 4, "error": 1}
    assert line["latency_s"] == pytest.approx(0.012346)


def test_batch_completed_lists_at_most_32_tenants(captured: io.StringIO) -> None:
    """A batch spanning many tenants lists the busiest 32 and counts all of them."""
    tenants = {f"t{i:03d}": i for i in range(100)}
    audit.batch_completed(
        get_logger("x"), batch_id="b", size=1, partitions=[], tenants=tenants, outcomes={}, latency_s=0.0
    )
    (line,) = _lines(captured)
    assert len(line["tenants"]) == 32
    assert line["tenant_count"] == 100
    assert "t099" in line["tenants"]


def test_request_failed_line(captured: io.StringIO) -> None:
    """request.failed is a warning with the lineage of the failed input."""
    audit.request_failed(
        get_logger("x"),
        request_id="r1",
        tenant="acme",
        error_type="timeout",
        error="the processor did not finish within 30.0 s",
        attempts=3,
        topic="requests",
        partition=1,
        offset=42,
    )
    (line,) = _lines(captured)
    assert line["event"] == "request.failed"
    assert line["level"] == "warning"
    assert {
        k: line[k] for k in ("request_id", "tenant", "error_type", "attempts", "topic", "partition", "offset")
    } == {
        "request_id": "r1",
        "tenant": "acme",
        "error_type": "timeout",
        "attempts": 3,
        "topic": "requests",
        "partition": 1,
        "offset": 42,
    }


def test_request_failed_truncates_long_errors(captured: io.StringIO) -> None:
    """An enormous error message is cut to a bounded length."""
    audit.request_failed(
        get_logger("x"),
        request_id=None,
        tenant=None,
        error_type="unknown",
        error="x" * 10_000,
        attempts=1,
        topic="t",
        partition=0,
        offset=0,
    )
    (line,) = _lines(captured)
    assert len(line["error"]) < 600


def test_request_completed_fingerprints_the_prompt(captured: io.StringIO) -> None:
    """request.completed carries the prompt fingerprint and never the prompt itself."""
    audit.request_completed(
        get_logger("x"),
        request_id="r2",
        tenant="acme",
        profile_name="neutral_professional",
        prompt=PROMPT,
        topic="requests",
        partition=0,
        offset=9,
        latency_s=0.5,
        cached=True,
    )
    (line,) = _lines(captured)
    assert line["event"] == "request.completed"
    assert line["prompt"] == audit.fingerprint(PROMPT)
    assert line["cached"] is True
    assert PROMPT not in captured.getvalue()
    assert "zebra-quokka" not in captured.getvalue()


def test_lifecycle_and_partition_events(captured: io.StringIO) -> None:
    """Lifecycle, rebalance, pause and commit events have stable names and compact partition lists."""
    log = get_logger("x")
    audit.service_started(log, {"topics": {"input": "requests"}, "kafka": {"sasl_password": "**********"}})
    audit.partitions_assigned(log, [("requests", 1), ("requests", 0)])
    audit.paused(log, [("requests", 0)], "in_flight_bytes")
    audit.resumed(log, [("requests", 0)], "in_flight_bytes")
    audit.committed(log, {("requests", 1): 11, ("requests", 0): 10})
    audit.partitions_revoked(log, [("requests", 0), ("requests", 1)])
    audit.service_stopped(log, "signal SIGTERM", {"consumed": 10})
    lines = _lines(captured)
    assert [line["event"] for line in lines] == [
        "service.started",
        "partitions.assigned",
        "partitions.paused",
        "partitions.resumed",
        "offsets.committed",
        "partitions.revoked",
        "service.stopped",
    ]
    started, assigned, paused, _resumed, committed, _revoked, stopped = lines
    assert started["config"]["topics"] == {"input": "requests"}
    assert "version" in started and "pid" in started
    assert assigned["partitions"] == {"requests": [0, 1]} and assigned["count"] == 2
    assert paused["reason"] == "in_flight_bytes" and paused["level"] == "warning"
    assert committed["offsets"] == {"requests": {"0": 10, "1": 11}}
    assert stopped["reason"] == "signal SIGTERM" and stopped["stats"] == {"consumed": 10}


def test_no_audit_line_contains_the_prompt(captured: io.StringIO) -> None:
    """Across every audit event fed from a request, the distinctive prompt never appears."""
    log = get_logger("x")
    audit.request_completed(
        log,
        request_id="r",
        tenant="t",
        profile_name="p",
        prompt=PROMPT,
        topic="t",
        partition=0,
        offset=0,
        latency_s=0.1,
    )
    audit.request_failed(
        log,
        request_id="r",
        tenant="t",
        error_type="validation",
        error="$.prompt: expected str",
        attempts=0,
        topic="t",
        partition=0,
        offset=1,
    )
    audit.batch_completed(
        log,
        batch_id=1,
        size=2,
        partitions=[("t", 0)],
        tenants=["t"],
        outcomes={"success": 1, "error": 1},
        latency_s=0.2,
    )
    assert "zebra-quokka" not in captured.getvalue()
    assert len(_lines(captured)) == 3


@pytest.mark.parametrize(
    ("given", "expected", "count"),
    [
        pytest.param([("requests", 1), ("requests", 0)], {"requests": [0, 1]}, 2, id="topic-partition pairs"),
        pytest.param(
            ["requests[2]", "other[0]", "requests[1]"], {"other": [0], "requests": [1, 2]}, 3, id="strings"
        ),
        pytest.param([3, 1, 2], [1, 2, 3], 3, id="bare numbers"),
        pytest.param(["odd-name"], {"odd-name": []}, 0, id="unparsable string kept"),
    ],
)
def test_partition_shapes_are_normalised(
    captured: io.StringIO, given: list[Any], expected: Any, count: int
) -> None:
    """Partitions given as pairs, "topic[p]" strings or numbers all log in one compact shape."""
    audit.partitions_assigned(get_logger("x"), given)
    (line,) = _lines(captured)
    assert line["partitions"] == expected
    assert line["count"] == count


def test_request_completed_fingerprints_content_and_omits_unset_fields(captured: io.StringIO) -> None:
    """Generated content is fingerprinted like the prompt; optional fields left unset are absent."""
    content = "secret-answer-9931 about the patient"
    audit.request_completed(
        get_logger("x"), request_id="r", tenant="t", prompt=PROMPT, content=content, partition=0, offset=1
    )
    (line,) = _lines(captured)
    assert line["content"] == audit.fingerprint(content)
    assert "latency_s" not in line and "topic" not in line
    assert "secret-answer" not in captured.getvalue()
