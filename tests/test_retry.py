"""The retry policy's decisions (pure: no server needed)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from prefect_together_lora.retry import RETRYABLE_STATUS, RetryPolicy, retry_after_seconds


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUS))
def test_transient_statuses_are_retryable(status: int) -> None:
    assert RetryPolicy().is_retryable(response(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 422])
def test_other_4xx_are_never_retried(status: int) -> None:
    assert not RetryPolicy().is_retryable(response(status))


def test_x_should_retry_overrides_the_status() -> None:
    policy = RetryPolicy()
    assert not policy.is_retryable(response(503, **{"x-should-retry": "false"}))
    assert policy.is_retryable(response(400, **{"x-should-retry": "true"}))


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = httpx.Headers({"retry-after-ms": "250", "retry-after": "7"})
    assert retry_after_seconds(headers) == pytest.approx(0.25)


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "3"})) == 3.0
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    when = format_datetime(now + timedelta(seconds=20), usegmt=True)
    assert retry_after_seconds(httpx.Headers({"retry-after": when}), now=now.timestamp()) == 20.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


def test_delay_honours_retry_after_up_to_60s_else_backs_off() -> None:
    policy = RetryPolicy(initial_delay_s=0.5, max_delay_s=8.0, rng=random.Random(1))
    assert policy.delay(1, response(429, **{"retry-after": "2"})) == 2.0
    long_wait = policy.delay(1, response(429, **{"retry-after": "3600"}))
    assert 0 <= long_wait <= 0.5  # ignored: exponential backoff with full jitter instead


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    policy = RetryPolicy(initial_delay_s=1.0, max_delay_s=4.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the whole window


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retry_after_zero_means_backoff_not_at_once() -> None:
    """Together's SDKs use a hint only when 0 < x <= 60: `Retry-After: 0` is no hint."""
    policy = RetryPolicy(initial_delay_s=0.5, max_delay_s=8.0, rng=random.Random(7))
    delays = [policy.delay(3, response(429, **{"retry-after": "0"})) for _ in range(20)]
    assert all(0 <= d <= 2.0 for d in delays) and max(delays) > 0
    assert policy.delay(1, response(429, **{"retry-after-ms": "0", "retry-after": "0"})) <= 0.5
