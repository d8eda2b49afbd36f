"""`sync [--dry-run] [--json]`: pull schedules from API_URL now (under `lock:api_sync`).

Exit 0 when the answer was read and applied (invalid items are reported, not failures); 1 when
the fetch or parse failed (one line naming the case), another instance kept the lock, or a
service is unreachable. `--dry-run` needs neither Redis nor the lock: it writes nothing.
"""

from __future__ import annotations

import argparse

from services.cli.common import EXIT_OK, fail, print_json
from services.config import Settings, load_settings
from services.errors import ApiSyncError, SchedulerError
from services.lock.client import create_redis_client
from services.lock.target import RedisTarget
from services.metrics import Metrics
from services.store.pool import open_pool
from services.store.schedules import ScheduleRepository
from services.sync.service import ApiSyncService
from services.sync.sync import ApiSync, SyncResult

# A sync in progress elsewhere takes seconds; wait for it rather than fail at once.
LOCK_WAIT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="fetch and print what would change; write nothing"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()  # app.main sent the logs (warnings: invalid items) to stderr
    db = open_pool(settings.database_url, min_size=1, max_size=2)
    schedules = ScheduleRepository(db, default_timezone=settings.scheduler_timezone)
    try:
        result = _dry_run(schedules, settings) if args.dry_run else _sync(schedules, settings)
    except ApiSyncError as exc:
        return fail(f"API sync failed [{exc.case}]: {exc}")
    except SchedulerError as exc:
        return fail(str(exc))
    finally:
        db.close()
    if result is None:
        return fail(f"another instance kept lock:api_sync for {LOCK_WAIT_S:g}s; nothing was synced")
    if args.json:
        print_json(result.to_dict())
    else:
        _print_text(result)
    return EXIT_OK


def _dry_run(schedules: ScheduleRepository, settings: Settings) -> SyncResult:
    return ApiSync.from_settings(schedules, settings).sync(dry_run=True)


def _sync(schedules: ScheduleRepository, settings: Settings) -> SyncResult | None:
    client = create_redis_client(RedisTarget.from_settings(settings), max_connections=2)
    try:
        service = ApiSyncService(schedules, client, settings, Metrics())
        return service.run(lock_wait=LOCK_WAIT_S)
    finally:
        client.close()


def _print_text(result: SyncResult) -> None:
    for change in result.changes:
        detail = f" ({', '.join(change.fields)})" if change.fields else ""
        external = f" [{change.external_id}]" if change.external_id else ""
        print(f"{change.action:<8} {change.domain_config_id}{external} {change.domain}{detail}")
    for given, reason in result.invalid_items:
        print(f"invalid  {given if given is not None else '<no id>'}: {reason}")
    counts = ", ".join(f"{key} {value}" for key, value in result.counts.items())
    prefix = "dry run, would apply: " if result.dry_run else ""
    print(f"{prefix}{counts} ({result.items} items, {result.pages} pages)")
