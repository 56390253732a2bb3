"""Tracing's settings and wiring: off by default and then nothing of OpenTelemetry is imported;
the OTEL_* variables; the missing extra; the provider's service name, console exporter and
global registration."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stream_service.config import TracingSettings, load_config
from stream_service.errors import ConfigError
from stream_service.observability.otel import provider_for
from stream_service.observability.tracing import NO_TRACING, build_tracing

REPO = Path(__file__).resolve().parents[2]


def test_tracing_is_off_by_default_and_then_nothing_is_built() -> None:
    """The default configuration has tracing off, and build_tracing returns the no-op."""
    cfg = load_config(environ={})
    assert cfg.tracing == TracingSettings(enabled=False, service_name=None, exporter="otlp")
    assert build_tracing(cfg.tracing, input_topic="in", group_id="g") is NO_TRACING


def test_standard_otel_variables_pass_the_strict_environment_check() -> None:
    """OTEL_* variables are the SDK's: they never trip the check of unknown STREAM_SERVICE_* names;
    OTEL_TRACES_EXPORTER fills tracing.exporter when no setting gives it."""
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_SERVICE_NAME": "svc",
        "OTEL_TRACES_EXPORTER": "Console",
        "STREAM_SERVICE_TRACING__ENABLED": "true",
    }
    cfg = load_config(environ=environ)
    assert cfg.tracing == TracingSettings(enabled=True, exporter="console")
    assert (
        load_config(environ={**environ, "STREAM_SERVICE_TRACING__EXPORTER": "none"}).tracing.exporter
        == "none"
    )


def test_an_exporter_we_do_not_have_is_named_in_the_error() -> None:
    """OTEL_TRACES_EXPORTER naming an exporter we cannot use is a one-line ConfigError naming it."""
    with pytest.raises(ConfigError, match="tracing.exporter = zipkin .from env OTEL_TRACES_EXPORTER."):
        load_config(environ={"OTEL_TRACES_EXPORTER": "zipkin"})


def test_tracing_on_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """tracing.enabled without OpenTelemetry installed fails at startup, saying what to install."""
    monkeypatch.setitem(sys.modules, "stream_service.observability.otel", None)
    with pytest.raises(ConfigError, match=r"stream-service\[otel\]"):
        build_tracing(TracingSettings(enabled=True), input_topic="in", group_id="g")


@pytest.mark.parametrize(
    ("setting", "env", "expected"),
    [
        pytest.param(None, None, "stream-service", id="default"),
        pytest.param(None, "from-env", "from-env", id="OTEL_SERVICE_NAME"),
        pytest.param("from-setting", "from-env", "from-setting", id="the setting wins"),
    ],
)
def test_service_name(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, env: str | None, expected: str
) -> None:
    """service.name: tracing.service_name, else OTEL_SERVICE_NAME, else stream-service."""
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    if env is None:
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    else:
        monkeypatch.setenv("OTEL_SERVICE_NAME", env)
    provider = provider_for(TracingSettings(enabled=True, service_name=setting, exporter="none"))
    assert provider.resource.attributes["service.name"] == expected
    provider.shutdown()


def test_console_exporter_writes_one_json_object_per_span_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """exporter = console: each span is one JSON line on stderr, stdout (the log lines) untouched."""
    tracing = build_tracing(TracingSettings(enabled=True, exporter="console"), input_topic="in", group_id="g")
    assert tracing.enabled
    provider = tracing.provider  # type: ignore[attr-defined]
    provider.get_tracer("t").start_span("one").end()
    provider.shutdown()
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert json.loads(line)["name"] == "one"


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    """Building and running an engine (and a service's parts) with tracing off imports no module of
    OpenTelemetry, and outputs carry no trace headers."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from stream_service.config import load_config
        from stream_service.wiring import build_service
        from tests.engine_kit import TP0, Harness, config, req, running

        TRACEPARENT = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"

        async def main():
            h = Harness(config())
            async with running(h, TP0):
                h.consumer.feed_values(TP0, [req("r0", "a"), b"bad"], headers=[("traceparent", TRACEPARENT)])
                await h.producer.wait_acked(2)
            assert all(rec.header("traceparent") is None for rec in h.producer.acked)
            cfg = load_config(environ={}, flags={"processor.name": "http", "observability.metrics_port": ""})
            parts = build_service(cfg, lambda: (True, ""))
            await parts.executor.aclose()
            await parts.consumer.stop()
            await parts.producer.stop()

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        print(loaded)
        sys.exit(1 if loaded else 0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_service_makes_its_provider_the_global_one_unless_one_is_set() -> None:
    """make_global installs the provider for processors' own spans, and never replaces one already set."""
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from stream_service.observability.otel import OtelTracing, provider_for
        from stream_service.settings import TracingSettings

        def tracing():
            provider = provider_for(TracingSettings(enabled=True, exporter="none"))
            return OtelTracing(provider, input_topic="in", group_id="g")

        first, second = tracing(), tracing()
        first.make_global()
        second.make_global()
        assert trace.get_tracer_provider() is first.provider
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Overriding" not in done.stderr, "no warning from the SDK either"
