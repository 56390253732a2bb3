"""The lead's explanations of missed targets: a marked block of RESULTS.md kept across rewrites.

``python -m bench`` rewrites RESULTS.md, so hand-written text lives between
``<!-- explanations:begin -->`` and ``<!-- explanations:end -->``, one ``### KEY: name`` entry per
target (KEY as in :class:`bench.targets.Target`). A missed target without an entry gets a
placeholder to fill in from a profile; an untouched placeholder is dropped once the target is met.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.targets import Target

BEGIN, END = "<!-- explanations:begin -->", "<!-- explanations:end -->"
PLACEHOLDER = (
    "_TODO (lead): missed in this run; explain where the time or memory goes, from a profile "
    "(`python -m bench.spy`, see [ANALYSIS.md](ANALYSIS.md)). Write it here: this text is kept "
    "when `python -m bench` rewrites this file._"
)


def parse(text: str) -> dict[str, str]:
    """KEY -> body of every ``### KEY: ...`` entry in the marked block of ``text``."""
    if BEGIN not in text or END not in text:
        return {}
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    entries: dict[str, str] = {}
    key: str | None = None
    body: list[str] = []
    for line in block.splitlines():
        if line.startswith("### "):
            if key is not None:
                entries[key] = "\n".join(body).strip()
            key, body = line[4:].split(":", 1)[0].strip(), []
        elif key is not None:
            body.append(line)
    if key is not None:
        entries[key] = "\n".join(body).strip()
    return entries


def read(path: Path) -> dict[str, str]:
    """The entries of the file at ``path`` (none when it does not exist)."""
    return parse(path.read_text()) if path.exists() else {}


def render(targets: Sequence[Target], kept: Mapping[str, str]) -> list[str]:
    """The marked block: an entry per missed target (kept text or placeholder), and every other
    kept entry the lead wrote (a bare placeholder of a target no longer missed is dropped)."""
    lines = [
        BEGIN,
        "## Explanations of the misses",
        "",
        "Written by hand from profiles; `python -m bench` keeps this block when it rewrites the file.",
        "",
    ]
    names = {t.key: t.name for t in targets}
    missed = [t.key for t in targets if t.met is False]
    others = [k for k, body in kept.items() if k not in missed and body and body != PLACEHOLDER]
    if not missed and not others:
        lines += ["Nothing missed in this run.", ""]
    for key in [*missed, *others]:
        status = "missed in this run" if key in missed else "not missed in this run"
        lines += [f"### {key}: {names.get(key, key)} ({status})", "", kept.get(key) or PLACEHOLDER, ""]
    return [*lines, END, ""]
