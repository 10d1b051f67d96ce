"""The one HTTP retry policy, shared by the sync and async clients.

Mirrors what Together's SDKs do (retry 408/409/425/429/5xx and transport errors; honour
``retry-after-ms`` then ``retry-after`` when at most 60 s; otherwise exponential backoff with full
jitter; obey ``x-should-retry``) and never retries any other 4xx. Prefect task retries sit above
this for whole-task failures, not as a second layer of HTTP retries.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


RETRYABLE_STATUS: frozenset[int] = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a request and how long to wait before the next attempt."""

    max_attempts: int = 5
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUS
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def is_retryable(self, response: httpx.Response) -> bool:
        """Whether the response's status (or an explicit ``x-should-retry``) asks for a retry."""
        override = response.headers.get("x-should-retry", "").lower()
        if override in ("true", "false"):
            return override == "true"
        return response.status_code in self.retry_statuses

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based), from the server's hint or backoff."""
        if response is not None:
            hinted = retry_after_seconds(response.headers)
            # as Together's SDKs do: a hint counts only when 0 < x <= 60 (0 = "use backoff")
            if hinted is not None and 0 < hinted <= self.max_retry_after_s:
                return hinted
        ceiling = min(self.max_delay_s, self.initial_delay_s * 2 ** (attempt - 1))
        return self.rng.uniform(0, ceiling)


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Parse ``retry-after-ms``, then ``retry-after`` (seconds or an HTTP date); None if absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
