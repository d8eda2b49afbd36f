"""A pooled httpx.Client made at its first use, for a part that may never send a request.

The `http` job handler and the notification senders each keep one client for all their sends.
Made at start-up, httpx and the TLS context each client loads cost every daemon about 40 ms of
import, 20-40 ms and 1-2 MB per client, also when it has no http job and no channel;
made here, they cost that at the first send. httpx.Client is safe to share between threads.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class LazyHttpClient:
    def __init__(self, **options: Any) -> None:
        self._options = options  # httpx.Client's keyword arguments
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(**self._options)
            return self._client

    def close(self) -> None:
        """Closes the client if one was made; that one stays closed (a later send fails, as it
        did with a client made at start-up)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
