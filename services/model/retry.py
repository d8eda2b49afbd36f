"""Retry policy: how many attempts a schedule gets and how long to wait before the next one."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    initial_delay: float = 1.0  # RETRY_INITIAL_DELAY
    backoff_base: float = 2.0  # RETRY_BACKOFF_BASE
    max_delay: float = 300.0  # RETRY_MAX_DELAY
    max_attempts: int = 3  # RETRY_MAX_ATTEMPTS: all attempts, the first included

    def attempts_for(self, max_retries: int | None) -> int:
        """Total attempts: a row's `max_retries: N` means N retries after the first."""
        return self.max_attempts if max_retries is None else max_retries + 1

    def base_delay(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1`, before jitter: initial * base^(attempt-1), capped."""
        exponent = max(0, attempt - 1)
        try:
            delay = self.initial_delay * self.backoff_base**exponent
        except OverflowError:
            delay = self.max_delay
        return min(self.max_delay, delay)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Base delay with "equal jitter": half fixed, half random, so retries spread out but
        never come back sooner than half the backoff."""
        base = self.base_delay(attempt)
        return base / 2 + base / 2 * rand()
