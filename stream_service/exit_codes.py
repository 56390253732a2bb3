"""The exit codes of every ``stream-service`` command, in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``stream-service`` process tells its caller when it exits.

    ``OK`` and ``FAILED`` are verdicts (``reconcile`` found inputs unanswered, the demo did not
    complete); ``USAGE`` means nothing useful ran (a bad setting or flag, a broker that cannot
    be reached, a missing topic, a processor that cannot be loaded); ``INTERRUPTED`` follows a
    second SIGTERM/SIGINT (or Ctrl-C), as shells report 128 + SIGINT.
    """

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130
