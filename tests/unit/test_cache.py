"""The result cache: LRU order, TTL on an injected clock, size bound, strong keys."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from stream_service.messages import Request
from stream_service.observability.metrics import Metrics
from stream_service.processors.base import Output
from stream_service.processors.cache import CacheBackend, ResultCache, cache_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(prompt: str = "p", tenant: str = "t", profile: str = "neutral_professional") -> Request:
    return Request(id="r", prompt=prompt, tenant=tenant, profile_name=profile)


def output(text: str) -> Output:
    return Output(content=text)


def test_put_then_get_hits_and_counts() -> None:
    """A stored output comes back; hits, misses and hit_rate count lookups."""
    cache = ResultCache(10, 60.0, clock=FakeClock())
    key = cache.key(request())
    assert cache.get(key) is None
    cache.put(key, output("a"))
    assert cache.get(key) == output("a")
    assert (cache.hits, cache.misses, cache.hit_rate) == (1, 1, 0.5)


def test_hit_rate_is_zero_before_any_lookup() -> None:
    """hit_rate does not divide by zero on a fresh cache."""
    assert ResultCache(1, 1.0).hit_rate == 0.0


def test_entry_expires_after_ttl() -> None:
    """An entry is served until ttl_s has passed since it was put, and never after."""
    clock = FakeClock()
    cache = ResultCache(10, 30.0, clock=clock)
    key = cache.key(request())
    cache.put(key, output("a"))
    clock.now += 29.999
    assert cache.get(key) == output("a")
    clock.now += 0.001
    assert cache.get(key) is None
    assert len(cache) == 0


def test_get_refreshes_recency_but_not_age() -> None:
    """Reading an entry keeps it from LRU eviction but does not extend its TTL."""
    clock = FakeClock()
    cache = ResultCache(10, 10.0, clock=clock)
    key = cache.key(request())
    cache.put(key, output("a"))
    clock.now += 9.0
    assert cache.get(key) is not None
    clock.now += 1.0
    assert cache.get(key) is None


def test_put_again_replaces_and_restarts_ttl() -> None:
    """Putting an existing key replaces its output and starts a new TTL."""
    clock = FakeClock()
    cache = ResultCache(10, 10.0, clock=clock)
    key = cache.key(request())
    cache.put(key, output("old"))
    clock.now += 8.0
    cache.put(key, output("new"))
    clock.now += 8.0
    assert cache.get(key) == output("new")
    assert len(cache) == 1


def test_least_recently_used_is_evicted_first() -> None:
    """Over max_entries, the entry read or written longest ago goes first."""
    cache = ResultCache(2, 60.0, clock=FakeClock())
    a, b, c = (cache.key(request(prompt)) for prompt in "abc")
    cache.put(a, output("a"))
    cache.put(b, output("b"))
    assert cache.get(a) is not None  # a is now more recent than b
    cache.put(c, output("c"))
    assert b not in cache
    assert a in cache and c in cache
    assert cache.evictions == 1


def test_evictions_and_size_are_exported_as_metrics() -> None:
    """Each eviction counts in cache_evictions_total; cache_entries reads the size at scrape time."""
    metrics = Metrics(CollectorRegistry())
    cache = ResultCache(2, 60.0, clock=FakeClock(), metrics=metrics)
    for prompt in "abcd":
        cache.put(cache.key(request(prompt)), output(prompt))
    assert metrics.registry.get_sample_value("stream_service_cache_evictions_total") == 2
    assert metrics.registry.get_sample_value("stream_service_cache_entries") == 2
    cache.clear()
    assert metrics.registry.get_sample_value("stream_service_cache_entries") == 0


def test_size_never_exceeds_max_entries() -> None:
    """However many distinct keys are put, the cache holds at most max_entries."""
    cache = ResultCache(50, 60.0, clock=FakeClock())
    for i in range(500):
        cache.put(cache.key(request(str(i))), output(str(i)))
        assert len(cache) <= 50
    assert len(cache) == 50


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(request(tenant="other"), id="tenant"),
        pytest.param(request(profile="tech_startup"), id="profile"),
        pytest.param(request(prompt="p2"), id="prompt"),
    ],
)
def test_key_differs_by_each_field(other: Request) -> None:
    """Changing the prompt, the tenant or the profile changes the key."""
    assert cache_key(other) != cache_key(request())


def test_key_is_injective_across_field_boundaries() -> None:
    """Length prefixes keep ("ab", "c") and ("a", "bc") apart."""
    assert cache_key(request(prompt="ab", tenant="c")) != cache_key(request(prompt="a", tenant="bc"))


def test_key_ignores_id_and_is_32_bytes() -> None:
    """Two requests differing only by id share a 32-byte key."""
    first = Request(id="1", prompt="p", tenant="t")
    second = Request(id="2", prompt="p", tenant="t")
    assert cache_key(first) == cache_key(second)
    assert len(cache_key(first)) == 32


def test_key_accepts_lone_surrogates() -> None:
    """A prompt holding a lone surrogate (valid in JSON strings) still hashes."""
    assert len(cache_key(request(prompt="\ud800"))) == 32


def test_result_cache_satisfies_backend_protocol() -> None:
    """ResultCache implements the CacheBackend protocol a shared backend would implement."""
    assert isinstance(ResultCache(1, 1.0), CacheBackend)


@pytest.mark.parametrize(
    ("entries", "ttl"), [pytest.param(0, 1.0, id="no entries"), pytest.param(1, 0.0, id="no ttl")]
)
def test_rejects_invalid_bounds(entries: int, ttl: float) -> None:
    """A cache that could hold nothing, or keep nothing, is a configuration mistake."""
    with pytest.raises(ValueError, match="must be"):
        ResultCache(entries, ttl)
