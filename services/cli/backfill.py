"""`backfill ID --from T --to T [--mode missing|failed|all] [--dry-run] [--json]`: queue a
schedule's occurrences in [from, to) to run again (trigger='backfill'); the daemons run them."""

from __future__ import annotations

import argparse
from datetime import datetime

from services.cli.common import EXIT_OK, EXIT_USAGE, fail, print_json
from services.cli.context import actor, repository
from services.cli.schedules import uuid_arg
from services.errors import InvalidBackfill, InvalidScheduleError, ScheduleNotFound
from services.store.backfill import Backfill


def _instant(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {raw!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. {raw}Z): {raw!r}")
    return moment


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backfill",
        help="run a schedule's occurrences in [--from, --to) again, one at a time",
        epilog="example: python scheduler.py backfill ID --from 2026-01-01T00:00Z "
        "--to 2026-01-02T00:00Z --mode failed",
    )
    p.add_argument("schedule_id", type=uuid_arg)
    p.add_argument("--from", dest="start", type=_instant, required=True, help="included")
    p.add_argument("--to", dest="end", type=_instant, required=True, help="excluded")
    p.add_argument(
        "--mode",
        choices=["missing", "failed", "all"],
        default="missing",
        help="missing: never ran; failed: latest attempt failed/timed out/abandoned; all",
    )
    p.add_argument("--dry-run", action="store_true", help="list the occurrences, write nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    schedules = repository()
    try:
        result = Backfill(schedules.db, schedules, actor()).run(
            args.schedule_id, args.start, args.end, args.mode, dry_run=args.dry_run
        )
    except ScheduleNotFound as exc:
        return fail(str(exc))
    except (InvalidBackfill, InvalidScheduleError) as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.json:
        print_json(result.to_dict())
        return EXIT_OK
    verb = "would queue" if result.dry_run else "queued"
    count = len(result.occurrences) if result.dry_run else result.queued
    print(f"{verb} {count} of {result.considered} occurrences ({result.mode})")
    for item in result.occurrences:
        print(f"  {item['scheduled_for']}  attempt {item['attempt']}")
    return EXIT_OK
