"""Giving the C heap's free pages back to the system after a bulk load.

The start-up load builds millions of objects and frees as many temporaries (rows, decoded JSON,
psycopg's result buffers, the next_run writes' parameters). glibc keeps what was freed inside its
heap, so the resident size stays near the peak: at 100,000 varied schedules ~70 MB above what the
loaded schedules hold. `malloc_trim(0)` returns those pages (it also releases free pages in the
middle of the heap, not only at its top). Elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
