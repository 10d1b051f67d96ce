"""Concurrency that adapts to Together's rate limits (additive increase, multiplicative
decrease): halve on a 429, step down when ``x-ratelimit-remaining`` runs low, grow back slowly
while answers come through."""

from __future__ import annotations

import asyncio
import time

from prefect_together_lora.schemas import RateLimitInfo

LOW_REMAINING = 0.1
COOLDOWN_S = 0.5  # at most one cut per window, like TCP congestion control


class AdaptiveLimiter:
    def __init__(
        self, max_concurrency: int, min_concurrency: int = 1, cooldown_s: float = COOLDOWN_S
    ) -> None:
        self.max = max(1, max_concurrency)
        self.min = max(1, min(min_concurrency, self.max))
        self.limit = float(self.max)
        self.cooldown_s = cooldown_s
        self._inflight = 0
        self._cond = asyncio.Condition()
        self._last_cut = float("-inf")
        self.throttled = 0

    def _cut(self, factor: float) -> None:
        now = time.monotonic()
        if now - self._last_cut >= self.cooldown_s:
            self.limit = max(self.min, self.limit * factor)
            self._last_cut = now

    async def __aenter__(self) -> AdaptiveLimiter:
        async with self._cond:
            await self._cond.wait_for(lambda: self._inflight < int(self.limit))
            self._inflight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self._inflight -= 1
            # wake only as many waiters as there are free slots (not all of them: with
            # hundreds queued, notify_all costs O(n) wake-ups per answer)
            self._cond.notify(max(1, int(self.limit) - self._inflight))

    def on_success(self, rate: RateLimitInfo | None) -> None:
        fraction = rate.remaining_fraction if rate is not None else None
        if fraction is not None and fraction < LOW_REMAINING:
            self._cut(0.75)
        else:
            self.limit = min(self.max, self.limit + 1 / max(1.0, self.limit))

    def on_throttle(self, count: int = 1) -> None:
        self.throttled += count
        self._cut(0.5)
