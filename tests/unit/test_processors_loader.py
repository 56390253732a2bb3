"""Loading processors by name and calling them: shapes, normalisation, errors, worker entry points."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stream_service.config import ProcessorSettings
from stream_service.errors import InvalidRequest, PluginError, ProcessorFailed, RetriableError, UnknownProfile
from stream_service.messages import HRV_DIMENSIONS, Request
from stream_service.processors import loader
from stream_service.processors.base import Output
from stream_service.processors.loader import (
    LoadedProcessor,
    ProcessorSpec,
    load_processor,
    worker_call,
    worker_init,
)

PLUGINS = "python:tests.fixtures.plugins"
README = "python:tests.fixtures.readme_plugin"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "processors.md"


def requests(*prompts: str, profile: str = "neutral_professional") -> list[Request]:
    return [Request(id=str(i), prompt=p, profile_name=profile) for i, p in enumerate(prompts)]


def load(name: str, *, hrv: bool = False, **options: Any) -> LoadedProcessor:
    return load_processor(ProcessorSpec(name=name, hrv=hrv, options=options))


def contents(results: list[Output | BaseException]) -> list[str]:
    return [r.content if isinstance(r, Output) else type(r).__name__ for r in results]


@pytest.fixture
def clean_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh worker state for worker_init/worker_call run in this process; its loop closed after."""
    monkeypatch.setattr(loader, "_worker_processor", None)
    monkeypatch.setattr(loader, "_worker_loop", None)
    yield
    if loader._worker_loop is not None:
        loader._worker_loop.close()


# --- built-in processors -------------------------------------------------------------------


def test_spec_from_settings_copies_every_field() -> None:
    """ProcessorSpec.from_settings carries name, hrv, profiles_dir, http and options over."""
    settings = ProcessorSettings(name="echo", hrv=False, profiles_dir="/p", options={"a": 1})
    spec = ProcessorSpec.from_settings(settings)
    assert (spec.name, spec.hrv, spec.profiles_dir, spec.http, spec.options) == (
        "echo",
        False,
        "/p",
        settings.http,
        {"a": 1},
    )
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_echo_returns_prompts_without_hrv_when_disabled() -> None:
    """echo answers each prompt with itself; with hrv off no vector is computed."""
    echo = load("echo")
    assert (echo.is_async, echo.is_batch, echo.profiles) == (False, True, None)
    results = echo.call_sync(requests("a", "b"))
    assert results == [Output(content="a"), Output(content="b")]


def test_hrv_is_added_when_enabled() -> None:
    """With hrv on, an output without hrv_vector gets the extractor's 8 values."""
    results = load("echo", hrv=True).call_sync(requests("Hello friends! We love you!"))
    assert isinstance(results[0], Output)
    assert results[0].hrv_vector is not None and len(results[0].hrv_vector) == HRV_DIMENSIONS


def test_resonance_is_the_default_and_declares_profiles() -> None:
    """The default processor is resonance; it accepts exactly the registry's profiles."""
    resonance = load_processor(ProcessorSpec())
    assert resonance.profiles is not None and "tech_startup" in resonance.profiles
    assert not resonance.is_async and not resonance.is_batch
    ok, unknown = resonance.call_sync(
        [
            Request(id="1", prompt="cloud backup", profile_name="tech_startup"),
            *requests("x", profile="pirate"),
        ]
    )
    assert isinstance(ok, Output) and ok.hrv_vector is not None and "cloud backup" in ok.content.lower()
    assert isinstance(unknown, UnknownProfile)


def test_http_processor_loads_as_async_with_profiles() -> None:
    """http is an async per-request processor accepting the registry's profiles."""
    http = load("http")
    assert (http.is_async, http.is_batch) == (True, False)
    assert http.profiles is not None and "neutral_professional" in http.profiles


def test_unknown_processor_name_is_a_plugin_error() -> None:
    """An unknown name fails with the list of valid choices."""
    with pytest.raises(PluginError, match="resonance, http, echo or python:package.module:attribute"):
        load("gpt")


# --- plugin shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "options", "is_async", "is_batch", "expected"),
    [
        pytest.param("upper", {}, False, False, ["AB", "CD"], id="sync function"),
        pytest.param("async_upper", {}, True, False, ["AB", "CD"], id="async function"),
        pytest.param("async_instance", {}, True, False, ["ba", "dc"], id="instance with async __call__"),
        pytest.param("lengths", {}, False, True, ["2", "2"], id="function marked batch"),
        pytest.param("batch_object", {}, False, True, ["#0 ab", "#1 cd"], id="object with process_batch"),
        pytest.param(
            "async_batch_object", {}, True, True, ["ab", "cd"], id="object with async process_batch"
        ),
        pytest.param(
            "make_prefixer", {"prefix": "> "}, False, False, ["> ab", "> cd"], id="factory function"
        ),
        pytest.param(
            "Configured", {"suffix": "!"}, False, False, ["ab!", "cd!"], id="class factory with options"
        ),
        pytest.param("NoOptions", {}, False, False, ["no options"] * 2, id="class factory without arguments"),
        pytest.param("optional_second", {}, False, False, ["ab", "cd"], id="optional second parameter"),
        pytest.param("returns_object", {}, False, False, ["ab", "cd"], id="object with content attribute"),
    ],
)
async def test_plugin_shapes(
    attribute: str, options: dict[str, Any], is_async: bool, is_batch: bool, expected: list[str]
) -> None:
    """Every supported plugin form loads with the right shape and answers in request order."""
    processor = load(f"{PLUGINS}:{attribute}", **options)
    assert (processor.is_async, processor.is_batch) == (is_async, is_batch)
    batch = requests("ab", "cd")
    if is_async:
        results = await processor.call_async_batch(batch)
    else:
        results = processor.call_sync(batch)
    assert contents(results) == expected
    assert (await processor.call_async(batch[0])).content == expected[0]
    await processor.aclose()


def test_plugin_declared_profiles_are_exposed() -> None:
    """A plugin's profiles attribute limits the profiles the decoder accepts."""
    assert load(f"{PLUGINS}:NoOptions").profiles == frozenset({"alpha", "beta"})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        pytest.param(f"{PLUGINS}:no_args", {}, "takes no arguments", id="callable without parameters"),
        pytest.param(
            f"{PLUGINS}:two_args", {}, r"requires 2 positional arguments \(request, other\)", id="two args"
        ),
        pytest.param(
            f"{PLUGINS}:keyword_only", {}, r"keyword-only arguments \(extra\)", id="required keyword-only"
        ),
        pytest.param(f"{PLUGINS}:not_callable", {}, "a int is not a processor", id="not callable"),
        pytest.param(f"{PLUGINS}:missing", {}, "has no attribute 'missing'", id="missing attribute"),
        pytest.param("python:tests.fixtures.absent:x", {}, "cannot import module", id="missing module"),
        pytest.param(
            "python:tests.fixtures.broken_plugin:x", {}, "raised RuntimeError", id="module fails on import"
        ),
        pytest.param(
            "python:tests.fixtures.plugins", {}, "python:package.module:attribute", id="no attribute part"
        ),
        pytest.param(f"{PLUGINS}:factory_raises", {}, "factory raised KeyError", id="factory raises"),
        pytest.param(f"{PLUGINS}:factory_returns_none", {}, "returned None", id="factory returns None"),
        pytest.param(f"{PLUGINS}:two_arg_factory", {}, "requires 2 positional", id="factory with two params"),
        pytest.param(f"{PLUGINS}:upper", {"x": 1}, "is not a factory", id="options for a non-factory"),
        pytest.param(
            f"{PLUGINS}:NoOptions", {"x": 1}, "takes no arguments but", id="options for argless class"
        ),
    ],
)
def test_bad_plugins_fail_at_load_naming_the_spec(name: str, options: dict[str, Any], message: str) -> None:
    """A plugin that cannot be imported, built or called fails at load, naming the spec and the problem."""
    with pytest.raises(PluginError, match=message) as caught:
        load(name, **options)
    assert repr(name) in str(caught.value)


# --- normalisation and per-request failures ------------------------------------------------


def test_processor_hrv_vector_is_kept_as_floats_with_metadata() -> None:
    """A valid hrv_vector from the processor is used (as floats) instead of the extractor's."""
    (result,) = load(f"{PLUGINS}:with_hrv", hrv=True).call_sync(requests("x"))
    assert result == Output(
        content="x", hrv_vector=[0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.0, 0.5], metadata={"k": "v"}
    )


def test_processor_hrv_vector_is_dropped_when_hrv_disabled() -> None:
    """With hrv off, hrv_vector is None even if the processor supplied one."""
    (result,) = load(f"{PLUGINS}:with_hrv").call_sync(requests("x"))
    assert isinstance(result, Output) and result.hrv_vector is None and result.metadata == {"k": "v"}


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        pytest.param("bad_hrv_range", "each must be a number in", id="hrv value out of range"),
        pytest.param("bad_hrv_length", "of 7 values; expected 8", id="hrv of 7 values"),
        pytest.param(
            "returns_int", "processor returned int; expected str or an object with content", id="int"
        ),
        pytest.param("returns_non_str_content", "content of type int", id="non-str content"),
        pytest.param("returns_bad_metadata", "metadata of type list; expected a mapping", id="list metadata"),
        pytest.param("returns_coroutine", "declare it `async def`", id="sync function returning a coroutine"),
    ],
)
def test_invalid_return_values_become_processor_failed(attribute: str, message: str) -> None:
    """A return value that cannot be normalised is a ProcessorFailed for that request, not a crash."""
    (result,) = load(f"{PLUGINS}:{attribute}", hrv=True).call_sync(requests("x"))
    assert isinstance(result, ProcessorFailed)
    assert message in str(result)


def test_per_request_failure_is_returned_in_place() -> None:
    """One failing request yields its exception at its position; the others succeed."""
    results = load(f"{PLUGINS}:fails_on_bad").call_sync(requests("a", "bad", "c"))
    assert contents(results) == ["a", "ValueError", "c"]


async def test_async_per_request_failure_is_returned_in_place() -> None:
    """call_async_batch returns an async processor's failure at its position."""
    results = await load(f"{PLUGINS}:async_upper").call_async_batch(requests("a", "bad", "c"))
    assert contents(results) == ["A", "ValueError", "C"]


async def test_async_batch_may_report_one_failure_in_place_and_is_closed() -> None:
    """An exception in a batch processor's returned list is that request's result; aclose reaches it."""
    processor = load(f"{PLUGINS}:async_batch_object")
    assert contents(await processor.call_async_batch(requests("a", "bad"))) == ["a", "ValueError"]
    await processor.aclose()
    assert processor.target.closed  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("attribute", "error", "message"),
    [
        pytest.param("wrong_count", ProcessorFailed, "returned 1 outputs for 3 requests", id="wrong count"),
        pytest.param("batch_raises", RuntimeError, "whole batch failed", id="batch raises"),
    ],
)
def test_batch_failure_applies_to_every_request(attribute: str, error: type[Exception], message: str) -> None:
    """A batch processor that raises, or answers the wrong number, fails every request of the batch."""
    results = load(f"{PLUGINS}:{attribute}").call_sync(requests("a", "b", "c"))
    assert len(results) == 3
    assert all(isinstance(r, error) and message in str(r) for r in results)


def test_empty_batch_does_not_call_the_processor() -> None:
    """An empty batch yields an empty list without calling the processor (it would fail here)."""
    assert load(f"{PLUGINS}:batch_raises").call_sync([]) == []


async def test_call_async_runs_a_sync_processor_and_raises_its_failure() -> None:
    """call_async works for sync processors (in a thread) and raises the request's failure."""
    processor = load(f"{PLUGINS}:fails_on_bad")
    assert (await processor.call_async(requests("ok")[0])).content == "ok"
    with pytest.raises(ValueError, match="bad prompt"):
        await processor.call_async(requests("bad")[0])


def test_call_sync_refuses_an_async_processor() -> None:
    """call_sync on an async processor is a programming error, reported clearly."""
    with pytest.raises(TypeError, match="use call_async"):
        load(f"{PLUGINS}:async_upper").call_sync(requests("a"))


# --- process-pool entry points -------------------------------------------------------------


def test_worker_call_before_init_is_an_error(clean_worker: None) -> None:
    """worker_call in a process where worker_init did not run says how to fix it."""
    with pytest.raises(RuntimeError, match="initializer"):
        worker_call(requests("a"))


@pytest.mark.parametrize(
    "attribute", [pytest.param("fails_on_bad", id="sync"), pytest.param("async_upper", id="async")]
)
def test_worker_call_classifies_failures(clean_worker: None, attribute: str) -> None:
    """worker_call returns Outputs and classified RequestErrors, for sync and async processors alike."""
    worker_init(ProcessorSpec(name=f"{PLUGINS}:{attribute}", hrv=False))
    results = worker_call(requests("a", "bad"))
    assert isinstance(results[0], Output)
    assert isinstance(results[1], ProcessorFailed) and "ValueError: bad prompt" in str(results[1])
    assert loader._worker_loop is None or not loader._worker_loop.is_closed()
    worker_call(requests("again"))  # the async worker's loop is reused, not closed


def test_worker_entry_points_run_in_a_spawned_process_pool() -> None:
    """Through a real spawn process pool, the spec, the requests and the results all pickle."""
    spec = ProcessorSpec(name=f"{README}:KeywordTagger", hrv=True, options={"keywords": ["kafka"]})
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=worker_init, initargs=(spec,)) as pool:
        results = pool.submit(worker_call, requests("kafka rocks", " ")).result(timeout=120)
    assert isinstance(results[0], Output) and results[0].hrv_vector is not None
    assert results[0].metadata == {"keywords": ["kafka"], "words": 2}
    assert isinstance(results[1], InvalidRequest)


# --- the documented example plugin ---------------------------------------------------------


async def test_readme_keyword_tagger_example() -> None:
    """The documentation's factory/batch example loads through load_processor and behaves as documented."""
    processor = load(f"{README}:KeywordTagger", keywords=["Kafka", "latency"], max_words=3)
    assert processor.is_batch and not processor.is_async
    assert processor.profiles == frozenset({"neutral_professional", "tech_startup"})
    results = processor.call_sync(requests("Kafka keeps latency low today", "   "))
    assert results[0] == Output(
        content="Kafka keeps latency [kafka, latency]",
        metadata={"keywords": ["kafka", "latency"], "words": 5},
    )
    assert isinstance(results[1], InvalidRequest)
    await processor.aclose()
    assert processor.target.closed  # type: ignore[attr-defined]


async def test_readme_shout_example() -> None:
    """The documentation's async example keeps its own hrv_vector and can ask for a retry."""
    processor = load(f"{README}:shout", hrv=True)
    assert processor.is_async and not processor.is_batch
    output = await processor.call_async(requests("hi")[0])
    assert output == Output(content="HI!", hrv_vector=[0.5, 1.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.5])
    flaky = Request(id="f", prompt="x", metadata={"flaky": True})
    with pytest.raises(RetriableError):
        await processor.call_async(flaky)


def test_readme_plugin_is_quoted_verbatim_in_docs() -> None:
    """docs/processors.md shows exactly the code of tests/fixtures/readme_plugin.py."""
    source = (Path(__file__).resolve().parents[1] / "fixtures" / "readme_plugin.py").read_text(
        encoding="utf-8"
    )
    assert f"```python\n{source}```" in DOCS.read_text(encoding="utf-8")
