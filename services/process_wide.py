"""Process-wide instances built on first use: the one mechanism behind every `get_*()` default.

The daemon builds its own parts and passes them along; these defaults serve the contract API
(`get_redis_client()`, `get_db_connection()`, `get_schedule_repository()`, ...) and scripts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessWide(Generic[T]):
    def __init__(self, build: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._build = build
        self._close = close
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def set(self, value: T | None) -> None:
        """Replace the instance (None: forget it, without closing)."""
        with self._lock:
            self._value = value

    def reset(self) -> None:
        """Close and forget the instance; the next get() builds a new one."""
        with self._lock:
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            self._close(value)
