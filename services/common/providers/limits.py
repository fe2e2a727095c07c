"""Client-side rate limiting shared by every call of one job: requests and tokens per minute,
a cap on calls in flight, and a global pause when the provider answers 429.

Requests are paced, not burst: at R requests/minute a call may start every 60/R seconds (GCRA
with a small burst allowance). A provider that enforces R over windows shorter than a minute
(most do) then never sees more than it allows. Tokens use the same scheme, charged with an
estimate before the call and corrected with the real usage after it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """RateLimits with the defaults applied (0 = unlimited)."""

    max_concurrency: int = 16
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_retries: int = 6


class _Gcra:
    """Generic cell rate: `rate` units per second, bursts of up to `burst` units (a burst of
    1 is strict pacing: one unit every 1/rate seconds)."""

    def __init__(self, per_minute: int, burst: float) -> None:
        self.rate = per_minute / 60.0
        # Seconds the schedule may run ahead of now.
        self.tolerance = max(0.0, burst - 1.0) / self.rate
        self.tat = 0.0  # theoretical arrival time of the next unit

    def delay(self, now: float) -> float:
        return max(0.0, self.tat - self.tolerance - now)

    def take(self, now: float, units: float) -> None:
        self.tat = max(self.tat, now) + units / self.rate

    def adjust(self, units: float) -> None:
        self.tat += units / self.rate


class RateLimiter:
    """`async with limiter.slot(estimated_tokens) as slot:` around each provider call.

    Order matters: a call first takes a concurrency slot, then waits for the pause, the request
    schedule and the token budget, so waiting calls hold no schedule they cannot use yet.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        request_burst: float = 1.0,
        token_burst_seconds: float = 1.0,
        clock=time.monotonic,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._concurrency = asyncio.Semaphore(limits.max_concurrency)
        self._lock = asyncio.Lock()
        self._requests = (
            _Gcra(limits.requests_per_minute, request_burst) if limits.requests_per_minute else None
        )
        self._tokens = (
            _Gcra(
                limits.tokens_per_minute,
                limits.tokens_per_minute / 60.0 * token_burst_seconds + 1,
            )
            if limits.tokens_per_minute
            else None
        )
        self._paused_until = 0.0
        self.pauses = 0
        self._aborted: BaseException | None = None

    def abort(self, error: BaseException) -> None:
        """No further call may start: each waiting or later one raises `error`. For a fatal
        provider answer, which ends the job: nothing more should be spent on it."""
        self._aborted = error

    def pause(self, seconds: float) -> None:
        """Holds every new call back for `seconds` (a 429's Retry-After)."""
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1

    def slot(self, estimated_tokens: int) -> _Slot:
        return _Slot(self, estimated_tokens)

    async def _acquire(self, estimated_tokens: int) -> None:
        await self._concurrency.acquire()
        try:
            if self._aborted is not None:
                raise self._aborted
            async with self._lock:  # one caller at a time takes from the schedules: FIFO
                while True:
                    now = self._clock()
                    wait = self._paused_until - now
                    if self._requests is not None:
                        wait = max(wait, self._requests.delay(now))
                    if self._tokens is not None:
                        wait = max(wait, self._tokens.delay(now))
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                if self._aborted is not None:
                    raise self._aborted
                if self._requests is not None:
                    self._requests.take(now, 1)
                if self._tokens is not None:
                    self._tokens.take(now, estimated_tokens)
        except BaseException:
            self._concurrency.release()
            raise

    def _settle(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        if self._tokens is not None and actual_tokens is not None:
            self._tokens.adjust(actual_tokens - estimated_tokens)
        self._concurrency.release()


class _Slot:
    def __init__(self, limiter: RateLimiter, estimated_tokens: int) -> None:
        self._limiter = limiter
        self._estimate = estimated_tokens
        self.actual_tokens: int | None = None

    async def __aenter__(self) -> _Slot:
        await self._limiter._acquire(self._estimate)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._settle(self._estimate, self.actual_tokens)
