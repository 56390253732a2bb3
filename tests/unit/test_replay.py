"""``stream-service replay``: which errors name which inputs, counts, skips, and producing the replays."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from stream_service.cli import build_parser
from stream_service.exit_codes import ExitCode
from stream_service.tools.lineage import Lineage
from stream_service.tools.replay import send_replays
from stream_service.tools.replay_plan import (
    DEFAULT_ERROR_TYPES,
    Failures,
    InputIndex,
    Origin,
    Plan,
    Skip,
    Skips,
    plan_replays,
    replay_headers,
    replay_marker,
)
from stream_service.tools.replay_summary import ReplayProgress, render_text, summarise
from tests.fakes import FakeClock, FakeProducer

TOPIC = "requests"
CT = ("content-type", b"application/json")


def lineage(partition: int, offset: int, topic: str = TOPIC, request_id: str | None = None) -> Lineage:
    return Lineage(topic, partition, offset, request_id, None, "application/json")


def marker(origin: str, count: int) -> list[tuple[str, bytes | None]]:
    return [("replay-of", origin.encode()), ("replay-count", str(count).encode())]


def failures_for(*inputs: tuple[int, int], error_type: str = "timeout") -> Failures:
    failures = Failures(TOPIC, DEFAULT_ERROR_TYPES)
    for partition, offset in inputs:
        failures.add(error_type, lineage(partition, offset), f"req-{partition}-{offset}")
    return failures


def index(
    failures: Failures,
    records: list[tuple[int, int, list[tuple[str, bytes | None]]]],
    log_start: dict[int, int] | None = None,
) -> InputIndex:
    """An InputIndex as the input scan would fill it from ``records`` (partition, offset, headers)."""
    found = InputIndex(failures.offsets(), log_start if log_start is not None else {0: 0, 1: 0, 2: 0})
    for partition, offset, headers in records:
        found.add(partition, offset, f"k{offset}".encode(), f"v{offset}".encode(), headers)
    return found


def reasons(plan: Plan) -> dict[str, int]:
    return {reason: n for reason, n in plan.skips.counts.items()}


class RecordingProducer(FakeProducer):
    """A FakeProducer that also notes the partition and the clock's time of every ``send``."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FakeClock()
        self.calls: list[tuple[int | None, float]] = []

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        self.calls.append((partition, self.clock.now()))
        # Kafka allows null header values; the fake is typed without them.
        return await super().send(topic, value, key, headers, partition)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(marker("requests/3/17", 2), (Origin("requests", 3, 17), 2), id="valid"),
        pytest.param(marker("a.b-c/0/0", 1), (Origin("a.b-c", 0, 0), 1), id="topic with dots and dashes"),
        pytest.param([CT], None, id="an original record"),
        pytest.param(marker("requests/3/17", 2)[:1], None, id="replay-of without a count"),
        pytest.param(marker("requests/x/17", 2), None, id="partition not a number"),
        pytest.param(marker("requests/3", 2), None, id="offset missing"),
        pytest.param(marker("/3/17", 2), None, id="topic empty"),
        pytest.param(marker("requests/3/17", 0), None, id="count zero"),
        pytest.param([("replay-of", b"requests/3/17"), ("replay-count", None)], None, id="count null"),
    ],
)
def test_replay_marker_reads_only_well_formed_replay_headers(
    headers: list[tuple[str, bytes | None]], expected: tuple[Origin, int] | None
) -> None:
    """A record is a replay only with both headers valid; anything else counts as an original."""
    assert replay_marker(headers) == expected


def test_replay_headers_keep_the_others_in_order_and_replace_old_replay_headers() -> None:
    """The copy's headers are the record's own, minus any earlier replay headers, plus the new two."""
    headers = [CT, *marker("requests/0/1", 1), ("trace", b"t-1")]
    assert replay_headers(headers, Origin("requests", 0, 1), 2) == [
        CT,
        ("trace", b"t-1"),
        ("replay-of", b"requests/0/1"),
        ("replay-count", b"2"),
    ]


# ---------------------------------------------------------------------------------------- collecting


def test_failures_keep_one_input_per_error_of_the_wanted_types() -> None:
    """Only wanted types count; a second error for one input, another topic or no lineage are skips."""
    failures = Failures(TOPIC, ["timeout", "connection"])
    failures.add("timeout", lineage(0, 5), "a")
    failures.add("connection", lineage(0, 5), "a")  # a redelivered input failed again
    failures.add("validation", lineage(0, 6), "b")  # not wanted: ignored
    failures.add("timeout", lineage(1, 2, topic="other"), "c")
    failures.add("timeout", None, "d")
    failures.add(None, None, None)  # undecodable
    assert failures.read == 6 and failures.unreadable == 1
    assert dict(failures.by_type) == {"timeout": 3, "connection": 1}
    assert failures.offsets() == {0: {5}}
    assert dict(failures.skips.counts) == {"duplicate": 1, "other-topic": 1, "no-lineage": 1}


def test_skips_count_everything_but_keep_only_a_few_examples_per_reason() -> None:
    """Memory stays bounded however many error records are skipped."""
    skips = Skips(examples=2)
    for offset in range(5):
        skips.add(Skip(reason="expired", partition=0, offset=offset, request_id=None, detail=""))
    skips.add(Skip(reason="duplicate", partition=0, offset=9, request_id=None, detail=""))
    assert skips.counts == {"expired": 5, "duplicate": 1}
    assert [s.offset for s in skips.examples] == [0, 1, 9]
    assert skips.needing_attention() == 5


# ------------------------------------------------------------------------------------------ planning


def test_an_original_is_replayed_unchanged_with_count_one_in_input_order() -> None:
    """Same partition, key, value and headers, plus replay-of its own coordinates and replay-count 1."""
    failures = failures_for((1, 4), (0, 7), (0, 2))
    plan = plan_replays(failures, index(failures, [(0, 2, [CT]), (0, 7, [CT]), (1, 4, [CT])]), max_replays=3)
    assert [(r.partition, r.offset) for r in plan.replays] == [(0, 2), (0, 7), (1, 4)]
    first = plan.replays[0]
    assert (first.key, first.value, first.replay_count) == (b"k2", b"v2", 1)
    assert first.headers == [CT, ("replay-of", b"requests/0/2"), ("replay-count", b"1")]
    assert reasons(plan) == {}


def test_a_replay_of_a_replay_keeps_the_original_and_counts_on() -> None:
    """replay-of names the request's first record, and replay-count is of the request."""
    failures = failures_for((0, 30))
    plan = plan_replays(failures, index(failures, [(0, 30, [CT, *marker("requests/0/2", 1)])]), max_replays=3)
    (replay,) = plan.replays
    assert (replay.origin, replay.replay_count) == (Origin(TOPIC, 0, 2), 2)
    assert replay.headers[-2:] == marker("requests/0/2", 2)


def test_a_request_with_a_later_replay_is_not_replayed_again() -> None:
    """The original's error is skipped when its replay exists; the failed replay is replayed instead."""
    failures = failures_for((0, 2), (0, 30))
    found = index(failures, [(0, 2, [CT]), (0, 30, [CT, *marker("requests/0/2", 1)])])
    plan = plan_replays(failures, found, max_replays=3)
    assert [(r.offset, r.replay_count) for r in plan.replays] == [(30, 2)]
    assert reasons(plan) == {"already-replayed": 1}


def test_running_again_after_a_successful_replay_replays_nothing() -> None:
    """A replay that succeeded is on the input topic: the same error window plans nothing new."""
    failures = failures_for((0, 2))
    found = index(failures, [(0, 2, [CT]), (0, 9, [CT]), (0, 31, [CT, *marker("requests/0/2", 1)])])
    plan = plan_replays(failures, found, max_replays=3)
    assert plan.replays == [] and reasons(plan) == {"already-replayed": 1}
    assert found.scanned == 3 and set(found.records) == {(0, 2)}


def test_two_failed_copies_of_one_request_are_replayed_once() -> None:
    """Two replays with the same count (two concurrent runs) that both failed give one new replay."""
    failures = failures_for((0, 30), (0, 31))
    copy = [CT, *marker("requests/0/2", 1)]
    plan = plan_replays(failures, index(failures, [(0, 30, copy), (0, 31, copy)]), max_replays=3)
    assert [r.offset for r in plan.replays] == [30]
    assert reasons(plan) == {"duplicate": 1}


@pytest.mark.parametrize(
    ("count", "max_replays", "replayed"),
    [
        pytest.param(2, 3, True, id="third replay allowed"),
        pytest.param(3, 3, False, id="fourth replay refused"),
        pytest.param(0, 1, True, id="first replay with max 1"),
        pytest.param(1, 1, False, id="second replay with max 1"),
    ],
)
def test_max_replays_bounds_the_replays_of_a_request(count: int, max_replays: int, replayed: bool) -> None:
    """A request whose next replay would exceed --max-replays is skipped as max-replays."""
    failures = failures_for((0, 40))
    headers: list[tuple[str, bytes | None]] = [CT, *marker("requests/0/2", count)] if count else [CT]
    plan = plan_replays(failures, index(failures, [(0, 40, headers)]), max_replays=max_replays)
    assert bool(plan.replays) is replayed
    assert reasons(plan) == ({} if replayed else {"max-replays": 1})


def test_inputs_gone_are_expired_below_the_log_start_and_not_found_otherwise() -> None:
    """Retention deleted offset 1 of partition 0; offset 9 and partition 5 are simply not there."""
    failures = failures_for((0, 1), (0, 9), (5, 0))
    plan = plan_replays(failures, index(failures, [], log_start={0: 4}), max_replays=3)
    assert plan.replays == []
    assert {(s.reason, s.partition, s.offset) for s in plan.skips.examples} == {
        ("expired", 0, 1),
        ("not-found", 0, 9),
        ("not-found", 5, 0),
    }


# --------------------------------------------------------------------------------------- the summary


def test_summary_is_ok_only_when_no_failed_request_is_left_without_a_replay() -> None:
    """Duplicates and earlier replays are fine; an expired input makes the run (and exit) not ok."""
    failures = failures_for((0, 2), (0, 2), (0, 1))
    found = index(failures, [(0, 2, [CT])], log_start={0: 2})
    plan = plan_replays(failures, found, max_replays=3)
    dry = summarise(failures, found, plan, errors_topic="errors", dry_run=True, max_replays=3)
    assert (dry.planned, dry.skipped, dry.ok) == (1, {"duplicate": 1, "expired": 1}, False)
    assert dry.planned_by_partition == {0: 1} and dry.planned_by_type == {"timeout": 1}
    text = render_text(dry)
    assert "would replay 1" in text and "DRY RUN: nothing produced; 1 failed requests" in text
    assert "  expired          0/1" in text  # listed: it leaves a request unreplayed
    assert "  duplicate" not in text  # counted only: the request is replayed once

    failures = failures_for((0, 2))
    found = index(failures, [(0, 2, [CT])])
    plan = plan_replays(failures, found, max_replays=3)
    done = summarise(
        failures, found, plan, errors_topic="errors", dry_run=False, max_replays=3, replayed=1, elapsed_s=0.5
    )
    assert done.ok and done.rate_per_s == 2.0
    assert render_text(done).splitlines()[-1].startswith("OK: replayed 1/1 to requests")

    again = summarise(
        failures, found, Plan(replays=[], skips=Skips()), errors_topic="e", dry_run=False, max_replays=3
    )
    assert render_text(again).splitlines()[-1].startswith("OK: nothing to replay")


# ------------------------------------------------------------------------------------------ producing


async def test_replays_go_to_their_partition_and_count_only_acknowledged_records() -> None:
    """Each replay is sent to the partition it came from; one Kafka refuses is reported, not counted."""
    failures = failures_for((0, 2), (1, 3), (2, 4))
    plan = plan_replays(failures, index(failures, [(0, 2, [CT]), (1, 3, [CT]), (2, 4, [CT])]), max_replays=3)
    producer = RecordingProducer()
    producer.fail_next(1, MessageSizeTooLargeError)
    seen: list[tuple[int, int]] = []
    acked, failed = await send_replays(
        producer, TOPIC, plan.replays, progress=lambda a, f: seen.append((a, f))
    )
    assert [partition for partition, _ in producer.calls] == [0, 1, 2]
    assert acked == 2 and [(f.partition, f.offset) for f in failed] == [(0, 2)]
    assert "MessageSizeTooLargeError" in failed[0].error
    assert [r.headers[-1] for r in producer.acked] == [("replay-count", b"1")] * 2
    assert seen[-1] == (2, 1)


async def test_rate_paces_the_replays_on_the_clock() -> None:
    """At 10 replays/s on a stepped clock, replay i goes out at i/10 s (to the pacing interval)."""
    failures = failures_for(*[(0, n) for n in range(5)])
    plan = plan_replays(failures, index(failures, [(0, n, [CT]) for n in range(5)]), max_replays=3)
    clock = FakeClock(start=0.0)
    producer = RecordingProducer(clock)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    acked, failed = await send_replays(producer, TOPIC, plan.replays, rate=10.0, clock=clock, sleep=sleep)
    assert (acked, failed) == (5, [])
    assert [at for _, at in producer.calls] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=0.011)


def test_progress_redraws_one_line_on_a_terminal_and_writes_plain_lines_elsewhere() -> None:
    """On a tty the line starts with a bar and is redrawn with \\r; elsewhere it is a whole line."""
    clock = FakeClock()
    tty = io.StringIO()
    line = ReplayProgress(tty, 200, tty=True, clock=clock, columns=lambda: 120)
    line.update(50, 0)
    clock.advance(1.0)
    line.finish(200, 0)
    assert tty.getvalue().startswith("\r[") and tty.getvalue().endswith("\n")
    assert "replayed 200/200" in tty.getvalue() and "100%" in tty.getvalue()
    plain = io.StringIO()
    line = ReplayProgress(plain, 10, tty=False, clock=clock)
    line.update(3, 1)
    assert plain.getvalue() == " 40%  replayed 3/10  failed 1  0 msg/s  0:00\n"


# ------------------------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--error-type", "validation"], "not replaying validation without --force", id="validation"
        ),
        pytest.param(["--error-type", "timeout,too_large"], "too_large: its result", id="too_large"),
        pytest.param(["--max-replays", "0"], "--max-replays must be at least 1", id="max replays zero"),
    ],
)
def test_the_command_refuses_what_cannot_work_before_it_connects(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Types a replay cannot fix need --force; a bound below 1 is a usage error (exit 2, no Kafka)."""
    args = build_parser().parse_args(["replay", "--bootstrap-servers", "127.0.0.1:1", *argv])
    assert args.handler(args) == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_unknown_error_types_are_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    """--error-type names only error types the contract has."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["replay", "--error-type", "timeout,tiemout"])
    assert exit_info.value.code == ExitCode.USAGE
    assert "unknown error type tiemout" in capsys.readouterr().err
