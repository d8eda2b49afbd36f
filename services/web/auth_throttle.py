"""Repeated bad tokens from one client address: after `max_failures` within `window` seconds,
each further 401 is answered only after SLOWDOWN_SECONDS.

The answer stays 401, as the contract says for a missing, unknown or revoked token; it only
comes later, waited for on the event loop (no worker thread is held: see problems.py and the
login page). A token is always looked up first, so a good token is never slowed, whoever shares
its address (behind a proxy every client has the proxy's address). Guessing is not what it
stops (a token has 256 random bits); it keeps a misconfigured or hostile client from pushing a
flood of 401s, each connection of it now at most one a second. Memory is bounded: at most
`max_clients` addresses are remembered, the least recently failing one is forgotten first, and
each keeps only the times of its last `max_failures` failures.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from services.clock import SYSTEM_CLOCK, Clock

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 4096
SLOWDOWN_SECONDS = 1.0


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

    def failed(self, client: str) -> float:
        """Record a bad token from `client`; the seconds to wait before its 401 (0 while the
        client is within the limit). Refused ones count: a client that keeps failing stays
        slowed until it pauses for a window."""
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
        return SLOWDOWN_SECONDS if over else 0.0

    def __len__(self) -> int:
        return len(self._failures)
