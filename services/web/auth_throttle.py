"""Repeated bad tokens from one client address: after `max_failures` within `window` seconds,
each further bad token is answered 429 with `Retry-After` instead of 401.

A token is always looked up first, so a good token is never refused, whoever shares its address
(behind a proxy every client has the proxy's address): the throttle slows down a client that
keeps sending bad tokens and tells it when to come back, it never locks anyone out. Guessing
is not what it stops (a token has 256 random bits); it keeps a misconfigured or hostile client
from pushing a flood of 401s, and makes it visible. Memory is bounded: at most `max_clients`
addresses are remembered, the least recently failing one is forgotten first, and each keeps
only the times of its last `max_failures` failures.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

from services.clock import SYSTEM_CLOCK, Clock

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 4096


class AuthThrottle:
    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # routes run on several worker threads

    def failed(self, client: str) -> float | None:
        """Record a bad token from `client`: None to answer 401, or the seconds to put in
        Retry-After of a 429 (the client is over the limit)."""
        now = self.clock.monotonic()
        with self._lock:
            times = self._failures.pop(client, None)
            if times is None:
                times = deque(maxlen=self.max_failures)
            while times and times[0] <= now - self.window:
                times.popleft()
            over = len(times) >= self.max_failures
            times.append(now)
            self._failures[client] = times  # now the most recent
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        if not over:
            return None
        # Retry when the oldest failure still counted leaves the window.
        return max(1.0, math.ceil(times[0] + self.window - now))

    def __len__(self) -> int:
        return len(self._failures)
