"""Fair scheduling across tenants: deficit round-robin over per-tenant queues, under token buckets."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stream_service.pipeline.limit import Clock, RateLimit, TokenBucket
from stream_service.pipeline.work import WorkItem
from stream_service.settings import LimiterSettings

QUANTUM_ITEMS = 8  # items a tenant of weight 1 may take per round; small keeps rounds fair
IDLE_SWEEP_INTERVAL_S = 1.0  # how often idle tenants whose buckets were refilling are looked at again


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """One tenant's share: its rate limit (None: unlimited), in-flight cap and DRR weight."""

    limit: RateLimit | None
    max_in_flight: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class SchedulerPolicy:
    """The global limit and the per-tenant defaults and overrides."""

    global_limit: RateLimit | None
    default_tenant: TenantPolicy
    tenants: dict[str, TenantPolicy] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: LimiterSettings) -> SchedulerPolicy:
        def limit(rate: float | None, burst: int) -> RateLimit | None:
            return None if rate is None else RateLimit(rate, burst)

        default = TenantPolicy(limit(s.tenant_rate, s.tenant_burst), s.tenant_max_in_flight)
        tenants = {
            name: TenantPolicy(
                limit(o.rate if o.rate is not None else s.tenant_rate, o.burst or s.tenant_burst),
                o.max_in_flight or s.tenant_max_in_flight,
                o.weight or 1,
            )
            for name, o in s.tenants.items()
        }
        return cls(limit(s.global_rate, s.global_burst), default, tenants)

    def for_tenant(self, tenant: str) -> TenantPolicy:
        return self.tenants.get(tenant, self.default_tenant)


class TenantQueue:
    """One tenant's waiting items, highest priority first, FIFO within a priority."""

    __slots__ = ("tenant", "policy", "bucket", "by_priority", "priorities", "size", "in_flight", "deficit")

    def __init__(self, tenant: str, policy: TenantPolicy, clock: Clock) -> None:
        self.tenant = tenant
        self.policy = policy
        self.bucket = TokenBucket(policy.limit, clock) if policy.limit is not None else None
        self.by_priority: dict[int, deque[WorkItem]] = {}
        self.priorities: list[int] = []  # sorted descending
        self.size = 0
        self.in_flight = 0
        self.deficit = 0

    def push(self, item: WorkItem) -> None:
        queue = self.by_priority.get(item.priority)
        if queue is None:
            queue = self.by_priority[item.priority] = deque()
            self.priorities.append(item.priority)
            self.priorities.sort(reverse=True)
        queue.append(item)
        self.size += 1

    def pop(self, n: int, out: list[WorkItem]) -> None:
        while n > 0:
            top = self.priorities[0]
            queue = self.by_priority[top]
            while n > 0 and queue:
                out.append(queue.popleft())
                n -= 1
                self.size -= 1
            if not queue:
                del self.by_priority[top]
                self.priorities.pop(0)

    def remove_if(self, predicate: Callable[[WorkItem], bool]) -> list[WorkItem]:
        removed: list[WorkItem] = []
        for priority in list(self.priorities):
            keep: deque[WorkItem] = deque()
            for item in self.by_priority[priority]:
                (removed if predicate(item) else keep).append(item)
            if keep:
                self.by_priority[priority] = keep
            else:
                del self.by_priority[priority]
                self.priorities.remove(priority)
        self.size -= len(removed)
        return removed


class FairScheduler:
    """Chooses which waiting requests run next.

    Guarantees:
    - fairness: tenants with waiting work are served in deficit round-robin, ``weight *
      QUANTUM_ITEMS`` items per round, so a tenant with a deep backlog cannot starve the others;
    - within a tenant, higher ``priority`` first, then arrival order;
    - no more than the global and per-tenant token buckets allow, and no tenant beyond its
      in-flight cap (:meth:`complete` gives the slot back);
    - it never blocks: :meth:`take` returns what may run now and, when limits held work back,
      how long until tokens are expected;
    - bounded state: a tenant with nothing queued or running is forgotten once its bucket is
      full again (as a new one would be), so :attr:`tenants` follows the active tenants.
    """

    def __init__(self, policy: SchedulerPolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._global = TokenBucket(policy.global_limit, clock) if policy.global_limit else None
        self._tenants: dict[str, TenantQueue] = {}
        self._active: deque[TenantQueue] = deque()
        self._idle: set[str] = set()  # tenants with nothing queued or running, bucket still refilling
        self._last_sweep = clock()
        self.size = 0

    @property
    def tenants(self) -> int:
        """Tenants the scheduler keeps state for (idle ones are dropped)."""
        return len(self._tenants)

    def _queue(self, tenant: str) -> TenantQueue:
        queue = self._tenants.get(tenant)
        if queue is None:
            queue = self._tenants[tenant] = TenantQueue(tenant, self.policy.for_tenant(tenant), self._clock)
        return queue

    def push(self, item: WorkItem) -> None:
        """Add a request that may run (its ordering gate admitted it)."""
        queue = self._queue(item.tenant)
        if queue.size == 0:
            self._active.append(queue)
            self._idle.discard(item.tenant)
        queue.push(item)
        self.size += 1

    def take(self, max_items: int, max_bytes: int) -> tuple[list[WorkItem], float]:
        """Up to ``max_items`` requests (and about ``max_bytes``) that may run now, chosen fairly.

        Returns the items and, when limits left waiting work behind and nothing could be taken,
        the seconds until a token is expected (0.0 otherwise).
        """
        taken: list[WorkItem] = []
        active = self._active
        if not active or max_items <= 0:
            return taken, 0.0
        global_avail = self._global.available() if self._global is not None else max_items
        budget = min(max_items, global_avail)
        nbytes = 0
        idle_visits = 0
        wait_s = 0.0
        while budget > 0 and active and idle_visits < len(active) and nbytes < max_bytes:
            queue = active[0]
            room = queue.policy.max_in_flight - queue.in_flight
            if queue.bucket is not None:
                room = min(room, queue.bucket.available())
            if room <= 0:
                if queue.bucket is not None and queue.in_flight < queue.policy.max_in_flight:
                    w = queue.bucket.wait_s(1)
                    wait_s = w if wait_s == 0.0 else min(wait_s, w)
                active.rotate(-1)
                idle_visits += 1
                continue
            idle_visits = 0
            if queue.deficit <= 0:  # a new turn; a turn cut short by the budget resumes where it stopped
                queue.deficit = queue.policy.weight * QUANTUM_ITEMS
            n = min(queue.deficit, room, budget, queue.size)
            start = len(taken)
            queue.pop(n, taken)
            for i in range(start, len(taken)):
                nbytes += taken[i].size
            queue.deficit -= n
            queue.in_flight += n
            if queue.bucket is not None:
                queue.bucket.take(n)
            budget -= n
            if queue.size == 0:
                queue.deficit = 0
                active.popleft()
            elif queue.deficit == 0:
                active.rotate(-1)  # turn used up: next tenant
        self.size -= len(taken)
        if self._global is not None and taken:
            self._global.take(len(taken))
        if not taken and self.size and self._global is not None and global_avail <= 0:
            wait_s = self._global.wait_s(1)
        return taken, wait_s

    def processed(self, items: Iterable[WorkItem]) -> None:
        """The processor is done with ``items``: the in-flight slots they took are free again."""
        slots: dict[str, int] = {}
        for item in items:
            if item.scheduled:
                item.scheduled = False
                slots[item.tenant] = slots.get(item.tenant, 0) + 1
        for tenant, n in slots.items():
            self.complete(tenant, n)

    def complete(self, tenant: str, n: int = 1) -> None:
        """Give back in-flight slots of ``tenant``; a tenant left idle is forgotten."""
        queue = self._tenants.get(tenant)
        if queue is None:
            return
        queue.in_flight -= n
        if queue.size == 0 and queue.in_flight <= 0:
            self._forget_if_rested(tenant, queue)
        if self._idle and self._clock() - self._last_sweep >= IDLE_SWEEP_INTERVAL_S:
            self._sweep()

    def _forget_if_rested(self, tenant: str, queue: TenantQueue) -> None:
        """Drop an idle tenant's state once its bucket is full again (a new one starts full)."""
        if queue.bucket is None or queue.bucket.full():
            del self._tenants[tenant]
            self._idle.discard(tenant)
        else:
            self._idle.add(tenant)

    def _sweep(self) -> None:
        self._last_sweep = self._clock()
        for tenant in list(self._idle):
            queue = self._tenants.get(tenant)
            if queue is None or queue.size or queue.in_flight > 0:
                self._idle.discard(tenant)
            else:
                self._forget_if_rested(tenant, queue)

    def remove_if(self, predicate: Callable[[WorkItem], bool]) -> list[WorkItem]:
        """Remove and return waiting items matching ``predicate`` (a revoked partition's)."""
        removed: list[WorkItem] = []
        for queue in list(self._active):
            removed.extend(queue.remove_if(predicate))
            if queue.size == 0:
                queue.deficit = 0
                self._active.remove(queue)
                if queue.in_flight <= 0:
                    self._forget_if_rested(queue.tenant, queue)
        self.size -= len(removed)
        return removed

    def queued(self, tenant: str) -> int:
        """Waiting items of one tenant."""
        queue = self._tenants.get(tenant)
        return queue.size if queue is not None else 0
