"""Tests for stream_service.pipeline.quota: per-tenant window and queue quotas, stepped by a fake clock."""

from __future__ import annotations

import pytest

from stream_service.config import LimitSettings
from stream_service.errors import RateLimited
from stream_service.pipeline.quota import TenantQuota
from tests.fakes import FakeClock


def test_no_limits_admit_everything() -> None:
    """With neither quota set (the default), every request is admitted."""
    quota = TenantQuota(LimitSettings(), FakeClock().now)
    assert all(quota.admit("a", queued=10**6) is None for _ in range(1000))


def test_max_queued_rejects_with_a_message_naming_the_setting() -> None:
    """A tenant at tenant_max_queued waiting requests is rejected; the message names the setting."""
    quota = TenantQuota(LimitSettings(tenant_max_queued=3), FakeClock().now)
    assert quota.admit("a", queued=2) is None
    rejection = quota.admit("a", queued=3)
    assert isinstance(rejection, RateLimited)
    assert rejection.error_type == "rate_limit"
    assert "limits.tenant_max_queued=3" in str(rejection)
    assert "'a'" in str(rejection)


def test_per_window_rejects_beyond_the_quota_per_tenant() -> None:
    """Past tenant_max_per_window requests in a window a tenant is rejected; others are unaffected."""
    quota = TenantQuota(LimitSettings(tenant_max_per_window=2, window_s=1.0), FakeClock().now)
    assert quota.admit("a", 0) is None
    assert quota.admit("a", 0) is None
    rejection = quota.admit("a", 0)
    assert isinstance(rejection, RateLimited)
    assert "limits.tenant_max_per_window=2" in str(rejection)
    assert "in 1 s" in str(rejection)
    assert quota.admit("b", 0) is None


@pytest.mark.parametrize(
    ("elapsed_s", "admitted"),
    [
        pytest.param(0.999, False, id="same window"),
        pytest.param(1.0, True, id="window boundary"),
        pytest.param(5.0, True, id="much later"),
    ],
)
def test_window_resets_after_window_s(elapsed_s: float, admitted: bool) -> None:
    """A new window starts window_s after the last one, and the counts start over."""
    clock = FakeClock()
    quota = TenantQuota(LimitSettings(tenant_max_per_window=1, window_s=1.0), clock.now)
    assert quota.admit("a", 0) is None
    assert quota.admit("a", 0) is not None
    clock.advance(elapsed_s)
    assert (quota.admit("a", 0) is None) is admitted


def test_queue_check_comes_first_and_does_not_use_the_window() -> None:
    """A rejection for a full queue does not consume a per-window slot."""
    quota = TenantQuota(LimitSettings(tenant_max_per_window=1, tenant_max_queued=5), FakeClock().now)
    rejection = quota.admit("a", queued=5)
    assert rejection is not None
    assert "tenant_max_queued" in str(rejection)
    assert quota.admit("a", queued=0) is None
