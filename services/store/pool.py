"""Opening the pool the stores work over, for callers outside `store/` (the CLI's commands).

Code outside `store/` never imports `database/`: it opens a pool here, hands it to the stores it
needs, and closes it when done.
"""

from __future__ import annotations

from database.connection import DatabaseConnection

__all__ = ["DatabaseConnection", "open_pool"]


def open_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, pool_timeout: float = 10.0
) -> DatabaseConnection:
    """A pool to `database_url`; it connects on first use, so opening it never fails."""
    return DatabaseConnection(
        database_url, min_size=min_size, max_size=max_size, pool_timeout=pool_timeout
    )
