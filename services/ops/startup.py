"""Start-up checks: wait (bounded) for PostgreSQL and Redis, refuse pending migrations."""

from __future__ import annotations

import redis

from services.clock import SYSTEM_CLOCK, Clock
from services.errors import DatabaseUnavailable, StartupError
from services.log import get_logger, mask_secrets
from services.store.migrations import Migrator
from services.store.pool import DatabaseConnection

log = get_logger(__name__)


def wait_for_services(
    db: DatabaseConnection,
    redis_client: redis.Redis,
    timeout: float,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Return once both answer; log each retry; StartupError after `timeout` seconds."""
    deadline = clock.monotonic() + timeout
    delay = 0.5
    while True:
        problems: list[str] = []
        try:
            db.check()
        except DatabaseUnavailable as exc:
            problems.append(str(exc))
        try:
            redis_client.ping()
        except redis.RedisError as exc:
            problems.append(f"cannot connect to Redis: {mask_secrets(str(exc))}")
        if not problems:
            return
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            raise StartupError(
                f"gave up after {timeout:g}s (STARTUP_TIMEOUT): " + "; ".join(problems)
            )
        log.warning(
            "startup.waiting_for_services",
            problems=problems,
            retry_in_s=round(min(delay, remaining), 2),
        )
        clock.sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)


def check_migrations(database_url: str, *, migrate_on_start: bool) -> None:
    """Apply pending migrations when allowed, else refuse to start naming the command."""
    migrator = Migrator(database_url)
    pending = migrator.pending()
    if not pending:
        return
    if migrate_on_start:
        for file in migrator.apply():
            log.info("startup.migration_applied", migration=file.filename)
        return
    names = ", ".join(f.filename for f in pending)
    raise StartupError(
        f"{len(pending)} pending migration(s): {names}; run `python scheduler.py migrate` "
        "(or set MIGRATE_ON_START=true)"
    )
