"""Per-tenant quotas from ``limits``: requests per window and queued. Over quota is answered, not dropped."""

from __future__ import annotations

from collections.abc import Callable

from stream_service.errors import RateLimited
from stream_service.settings import LimitSettings


class TenantQuota:
    """Rejects a tenant's request that is over ``limits.tenant_max_per_window`` (fixed window of
    ``limits.window_s``) or that would queue beyond ``limits.tenant_max_queued``.

    A rejection becomes an ErrorRecord with ``error_type`` rate_limit: nothing is dropped
    silently. With neither limit set (the default) it admits everything at no cost. Unlike the
    token buckets, which delay work, a quota sheds it, so a flood cannot occupy the buffer.
    """

    __slots__ = ("_per_window", "_max_queued", "_window_s", "_clock", "_window_start", "_counts")

    def __init__(self, limits: LimitSettings, clock: Callable[[], float]) -> None:
        self._per_window = limits.tenant_max_per_window
        self._max_queued = limits.tenant_max_queued
        self._window_s = limits.window_s
        self._clock = clock
        self._window_start = clock()
        self._counts: dict[str, int] = {}

    @property
    def active(self) -> bool:
        """False when no quota is configured: callers may skip :meth:`admit` entirely."""
        return self._per_window is not None or self._max_queued is not None

    def admit(self, tenant: str, queued: int) -> RateLimited | None:
        """None when the request may proceed, else the error to publish for it."""
        if self._max_queued is not None and queued >= self._max_queued:
            return RateLimited(
                f"tenant {tenant!r} has {queued} requests waiting, the limit is "
                f"limits.tenant_max_queued={self._max_queued}; slow the producer or raise the limit"
            )
        if self._per_window is None:
            return None
        now = self._clock()
        if now - self._window_start >= self._window_s:
            self._window_start = now
            self._counts.clear()
        count = self._counts.get(tenant, 0)
        if count >= self._per_window:
            return RateLimited(
                f"tenant {tenant!r} sent more than limits.tenant_max_per_window={self._per_window} "
                f"requests in {self._window_s:g} s"
            )
        self._counts[tenant] = count + 1
        return None
