"""Retry policy: jittered exponential backoff, Retry-After honoured."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A provider's Retry-After is obeyed up to this long; past it the job would rather fail.
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None, rng=random) -> float:
        """Seconds before retry number `attempt` (1-based): the provider's Retry-After when it
        gave one, else base·2^(attempt-1) capped at max_delay, times a jitter in [0.5, 1]
        (so clients that failed together do not retry together)."""
        if retry_after is not None:
            # A little later than asked, spread out, so that calls do not all return at once.
            return min(retry_after, self.max_retry_after) * rng.uniform(1.0, 1.1)
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return backoff * rng.uniform(0.5, 1.0)
