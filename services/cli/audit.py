"""`audit [--schedule ID] [--actor A] [--hours H] [--limit N]`: who changed which schedule."""

from __future__ import annotations

import argparse
from datetime import timedelta

from services.cli.common import EXIT_OK, print_json, print_table
from services.cli.context import audit
from services.cli.schedules import uuid_arg
from services.clock import SYSTEM_CLOCK, Clock

COLUMNS = ["changed_at", "schedule_id", "action", "actor", "changed_fields"]
CLOCK: Clock = SYSTEM_CLOCK  # the CLI is the program's edge: it reads the real time


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(f"--limit must be 1-500, got {value}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="configuration changes of schedules, newest first, with who made them",
        epilog="example: python scheduler.py audit --schedule ID --json",
    )
    p.add_argument("--schedule", type=uuid_arg, dest="schedule_id")
    p.add_argument("--actor", help="e.g. api:deploy-bot, cli:alice, sync, sql:postgres")
    p.add_argument("--hours", type=float, default=None, help="only changes of the last H hours")
    p.add_argument("--limit", type=_limit, default=50)
    p.add_argument("--json", action="store_true", help="with each change's before and after")
    p.set_defaults(handler=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    since = None if args.hours is None else CLOCK.now() - timedelta(hours=args.hours)
    entries, _next = audit().list(
        schedule_id=args.schedule_id, actor=args.actor, since=since, limit=args.limit
    )
    rows = [e.to_dict() for e in entries]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, COLUMNS)
    return EXIT_OK
