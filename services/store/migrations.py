"""`schema_migrations`: apply the numbered files of `migrations/` and report their state.

The work is done by `database.migrations` (it needs its own connection, outside the pool, for
the advisory lock and one transaction per file); this is the door to it for code outside `store/`
(`scheduler.py migrate`, the start-up check).
"""

from __future__ import annotations

from database.migrations import MigrationFile, MigrationState, Migrator

__all__ = ["MigrationFile", "MigrationState", "Migrator"]
