"""Tests for stream_service.loop: which event loop runs the service."""

from __future__ import annotations

import asyncio

import pytest

from stream_service import loop


def test_auto_takes_uvloop_when_installed() -> None:
    """auto and uvloop give uvloop's factory here (it is a dependency); asyncio gives none."""
    factory = loop.loop_factory("auto")
    assert factory is not None
    made = factory()
    try:
        assert loop.loop_name(made) == "uvloop"
    finally:
        made.close()
    assert loop.loop_factory("uvloop") is not None
    assert loop.loop_factory("asyncio") is None


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop, auto uses asyncio's loop and uvloop is an ImportError."""
    monkeypatch.setattr(loop.importlib.util, "find_spec", lambda name: None)
    assert loop.loop_factory("auto") is None
    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)
    with pytest.raises(ImportError):
        loop.loop_factory("uvloop")


def test_loop_name_of_asyncios_loop() -> None:
    """asyncio's own loop is reported as asyncio."""
    made = asyncio.new_event_loop()
    try:
        assert loop.loop_name(made) == "asyncio"
    finally:
        made.close()
