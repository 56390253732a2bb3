"""Tests for stream_service.pipeline.schedule: deficit round-robin across tenants under limits."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.config import LimiterSettings, TenantLimit
from stream_service.messages import Request
from stream_service.pipeline.limit import RateLimit
from stream_service.pipeline.schedule import (
    QUANTUM_ITEMS,
    FairScheduler,
    SchedulerPolicy,
    TenantPolicy,
)
from stream_service.pipeline.work import PartitionState, WorkItem
from tests.fakes import FakeClock

UNLIMITED = TenantPolicy(None, 1_000_000)
BIG_BYTES = 1 << 40
_offsets = itertools.count()


def item(tenant: str, *, priority: int = 0, state: PartitionState | None = None, size: int = 10) -> WorkItem:
    state = state or PartitionState("requests", 0, ordered=False)
    request = Request(id=f"r{next(_offsets)}", prompt="p", tenant=tenant, priority=priority)
    return WorkItem(state, next(_offsets), None, 0, size, request, None)


def scheduler(
    default: TenantPolicy = UNLIMITED,
    tenants: dict[str, TenantPolicy] | None = None,
    global_limit: RateLimit | None = None,
    clock: FakeClock | None = None,
) -> FairScheduler:
    return FairScheduler(SchedulerPolicy(global_limit, default, tenants or {}), clock or FakeClock())


def test_empty_scheduler_returns_nothing_and_no_wait() -> None:
    """take() on an empty scheduler, or with max_items 0, returns no items and a 0.0 wait."""
    s = scheduler()
    assert s.take(10, BIG_BYTES) == ([], 0.0)
    s.push(item("a"))
    assert s.take(0, BIG_BYTES) == ([], 0.0)
    assert s.size == 1


def _first_taken(backlogs: dict[str, int], take_size: int, k: int) -> Counter[str]:
    s = scheduler()
    for tenant, n in backlogs.items():
        for _ in range(n):
            s.push(item(tenant))
    got: list[WorkItem] = []
    while len(got) < k:
        batch, _ = s.take(take_size, BIG_BYTES)
        assert batch
        got.extend(batch)
    return Counter(i.tenant for i in got[:k])


@pytest.mark.parametrize(
    ("backlogs", "take_size", "k"),
    [
        pytest.param({"flood": 1000, "b": 100, "c": 100}, 12, 96, id="one tenant with 10x backlog"),
        pytest.param({"flood": 5000, "b": 100}, 64, 192, id="two tenants, batches of 64"),
        pytest.param({f"t{i}": 400 for i in range(6)}, 48, 240, id="six tenants, batches of 48"),
        pytest.param({"flood": 5000, "b": 300, "c": 300}, 1, 90, id="one item at a time"),
    ],
)
def test_deep_backlog_does_not_starve_other_tenants(backlogs: dict[str, int], take_size: int, k: int) -> None:
    """In the first K items taken, every waiting tenant gets about K/n, whatever its backlog."""
    counts = _first_taken(backlogs, take_size, k)
    share = k / len(backlogs)
    for tenant in backlogs:
        assert abs(counts[tenant] - share) <= QUANTUM_ITEMS, counts


@pytest.mark.parametrize(
    ("tenants", "take_size"),
    [
        pytest.param(2, 12, id="two tenants, batches of 12"),
        pytest.param(3, 20, id="three tenants, batches of 20"),
    ],
)
def test_fair_shares_whatever_the_batch_size(tenants: int, take_size: int) -> None:
    """Equally backlogged tenants get equal shares (within a quantum) for any take size."""
    k = 600
    counts = _first_taken({f"t{i}": 5000 for i in range(tenants)}, take_size, k)
    for i in range(tenants):
        assert abs(counts[f"t{i}"] - k / tenants) <= QUANTUM_ITEMS, counts


def test_weight_scales_a_tenants_share() -> None:
    """A tenant of weight 3 gets about three times the items of a weight-1 tenant."""
    s = scheduler(tenants={"heavy": TenantPolicy(None, 1_000_000, weight=3)})
    for _ in range(500):
        s.push(item("heavy"))
        s.push(item("light"))
    got, _ = s.take(4 * QUANTUM_ITEMS * 5, BIG_BYTES)
    counts = Counter(i.tenant for i in got)
    assert counts["heavy"] == 3 * counts["light"]


def test_higher_priority_first_then_arrival_order_within_a_tenant() -> None:
    """Within one tenant, items come out by descending priority, FIFO among equal priorities."""
    s = scheduler()
    pushed = [item("a", priority=p) for p in (0, 5, 1, 5, 0, 9)]
    for i in pushed:
        s.push(i)
    got, _ = s.take(100, BIG_BYTES)
    assert [i.priority for i in got] == [9, 5, 5, 1, 0, 0]
    fives = [i for i in pushed if i.priority == 5]
    assert [i for i in got if i.priority == 5] == fives


def test_tenant_rate_limit_holds_work_back_and_hints_the_wait() -> None:
    """A rate-limited tenant gets its burst, then nothing with a wait hint, then tokens as time passes."""
    clock = FakeClock()
    s = scheduler(default=TenantPolicy(RateLimit(8.0, 4), 1_000_000), clock=clock)
    for _ in range(20):
        s.push(item("a"))
    got, wait_s = s.take(100, BIG_BYTES)
    assert len(got) == 4
    got, wait_s = s.take(100, BIG_BYTES)
    assert got == []
    assert wait_s == pytest.approx(1 / 8)
    clock.advance(0.375)
    got, _ = s.take(100, BIG_BYTES)
    assert len(got) == 3
    assert s.size == 13


def test_a_limited_tenant_does_not_hold_back_an_unlimited_one() -> None:
    """When one tenant is out of tokens, the others are still served in the same take."""
    s = scheduler(tenants={"slow": TenantPolicy(RateLimit(1.0, 1), 1_000_000)})
    for _ in range(10):
        s.push(item("slow"))
        s.push(item("fast"))
    got, _ = s.take(100, BIG_BYTES)
    assert Counter(i.tenant for i in got) == {"slow": 1, "fast": 10}


def test_in_flight_cap_is_enforced_until_complete_gives_slots_back() -> None:
    """A tenant never has more than max_in_flight items out; complete() frees slots without a wait hint."""
    s = scheduler(default=TenantPolicy(None, 3))
    for _ in range(10):
        s.push(item("a"))
    got, _ = s.take(100, BIG_BYTES)
    assert len(got) == 3
    assert s.take(100, BIG_BYTES) == ([], 0.0), "no tokens are awaited, so no wait hint"
    s.complete("a", 2)
    got, _ = s.take(100, BIG_BYTES)
    assert len(got) == 2, "exactly the two slots given back"
    assert s.take(100, BIG_BYTES) == ([], 0.0)
    assert s.queued("a") == 5


def test_global_limit_caps_all_tenants_together() -> None:
    """The global bucket bounds the sum over tenants and hints the wait when it is empty."""
    clock = FakeClock()
    s = scheduler(global_limit=RateLimit(10.0, 4), clock=clock)
    for tenant in "abc":
        for _ in range(5):
            s.push(item(tenant))
    got, _ = s.take(100, BIG_BYTES)
    assert len(got) == 4
    got, wait_s = s.take(100, BIG_BYTES)
    assert got == []
    assert wait_s == pytest.approx(0.1)
    clock.advance(0.2)
    got, _ = s.take(100, BIG_BYTES)
    assert len(got) == 2


def test_max_bytes_stops_visiting_further_tenants() -> None:
    """Once a take reached max_bytes, no further tenant is visited in it."""
    s = scheduler()
    for _ in range(3):
        s.push(item("a", size=100))
        s.push(item("b", size=100))
    got, _ = s.take(100, 250)
    assert {i.tenant for i in got} == {"a"}


def test_remove_if_drops_a_revoked_partitions_items() -> None:
    """remove_if returns the matching waiting items; the rest stay and are served as before."""
    s = scheduler()
    p0 = PartitionState("requests", 0, ordered=False)
    p1 = PartitionState("requests", 1, ordered=False)
    for tenant in ("a", "b"):
        for priority in (0, 1):
            s.push(item(tenant, priority=priority, state=p0))
            s.push(item(tenant, priority=priority, state=p1))
    s.push(item("c", state=p0))
    removed = s.remove_if(lambda i: i.state is p0)
    assert len(removed) == 5
    assert all(i.state is p0 for i in removed)
    assert s.size == 4
    assert s.queued("c") == 0
    got, _ = s.take(100, BIG_BYTES)
    assert len(got) == 4
    assert all(i.state is p1 for i in got)
    assert s.size == 0


def test_policy_from_settings_inherits_tenant_defaults() -> None:
    """A tenant override inherits the unset fields (rate, burst, in-flight cap) from the defaults."""
    settings = LimiterSettings(
        global_rate=500.0,
        global_burst=50,
        tenant_rate=10.0,
        tenant_burst=20,
        tenant_max_in_flight=30,
        tenants={"vip": TenantLimit(rate=100.0, weight=4), "capped": TenantLimit(max_in_flight=2)},
    )
    policy = SchedulerPolicy.from_settings(settings)
    assert policy.global_limit == RateLimit(500.0, 50)
    assert policy.for_tenant("anyone") == TenantPolicy(RateLimit(10.0, 20), 30, 1)
    assert policy.for_tenant("vip") == TenantPolicy(RateLimit(100.0, 20), 30, 4)
    assert policy.for_tenant("capped") == TenantPolicy(RateLimit(10.0, 20), 2, 1)
    unlimited = SchedulerPolicy.from_settings(LimiterSettings())
    assert unlimited.global_limit is None
    assert unlimited.default_tenant.limit is None


@given(
    pushes=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 2)), max_size=80),
    takes=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5)), min_size=1, max_size=20),
)
def test_take_respects_bounds_and_conserves_items(
    pushes: list[tuple[str, int]], takes: list[tuple[int, int]]
) -> None:
    """take() never exceeds max_items or a tenant's in-flight cap, and every item comes out exactly once."""
    cap = 6
    s = scheduler(default=TenantPolicy(None, cap))
    pushed = [item(tenant, priority=p) for tenant, p in pushes]
    for i in pushed:
        s.push(i)
    out: list[WorkItem] = []
    in_flight = Counter[str]()
    for max_items, finished in takes:
        got, _ = s.take(max_items, BIG_BYTES)
        assert len(got) <= max_items
        out.extend(got)
        in_flight.update(i.tenant for i in got)
        for tenant in "abcd":
            assert in_flight[tenant] <= cap
            n = min(finished, in_flight[tenant])
            s.complete(tenant, n)
            in_flight[tenant] -= n
    while s.size:
        for tenant in "abcd":
            s.complete(tenant, in_flight[tenant])
            in_flight[tenant] = 0
        got, _ = s.take(100, BIG_BYTES)
        assert got, "waiting work with free slots and no limits must be taken"
        out.extend(got)
        in_flight.update(i.tenant for i in got)
    assert sorted(id(i) for i in out) == sorted(id(i) for i in pushed)
