"""Schedule commands: list, show, add, update, delete, enable, disable, validate."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from services.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    print_json,
    print_record,
    print_table,
)
from services.cli.context import actor, repository
from services.clock import SYSTEM_CLOCK
from services.errors import InvalidScheduleError, ScheduleNotFound
from services.model.catalog import Catalog
from services.model.fire_times import fire_times
from services.model.records import Schedule
from services.model.schedule_config import TAG_RULE, tag_errors
from services.model.vocabulary import JobType
from services.store.schedules import CONFIG_FIELDS, validate_config

LIST_COLUMNS = ["schedule_id", "domain", "frequency", "enabled", "next_run", "last_status"]


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (bad JSON is a usage error, exit 2)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object like '{\"hour\": 2}'")
    return value


def tag_arg(text: str) -> str:
    """argparse type: one tag (a bad one is a usage error, exit 2)."""
    if tag_errors([text]):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tag: a tag is {TAG_RULE}")
    return text


def uuid_arg(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def _config_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--domain-config-id", type=uuid_arg, required=required)
    parser.add_argument("--domain", required=required)
    parser.add_argument(
        "--frequency",
        required=required,
        help="cron, interval, once, hourly, daily, weekly or monthly",
    )
    parser.add_argument("--time-config", type=json_object, required=required, metavar="JSON")
    parser.add_argument("--job-type", choices=[t.value for t in JobType])
    parser.add_argument("--payload", type=json_object, metavar="JSON")
    parser.add_argument("--name")
    parser.add_argument(
        "--tag",
        dest="tags",
        action="append",
        type=tag_arg,
        metavar="TAG",
        help="a tag (repeatable); on update, the tags given replace the schedule's",
    )
    parser.add_argument(
        "--notify",
        type=json_object,
        metavar="JSON",
        help='which events go where, e.g. \'{"channels": ["ops"], "on": ["failed"]}\'',
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "list", help="list schedules", epilog="example: python scheduler.py list --enabled --json"
    )
    p.add_argument("--enabled", action="store_true", help="only enabled schedules")
    p.add_argument("--domain")
    p.add_argument("--source", choices=["manual", "api"])
    p.add_argument(
        "--tag",
        dest="tags",
        action="append",
        type=tag_arg,
        metavar="TAG",
        help="only schedules with this tag (repeatable: all must match)",
    )
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser(
        "show",
        help="show one schedule and its next fire times",
        epilog="example: python scheduler.py show 6f1c...-... --json",
    )
    p.add_argument("schedule_id", type=uuid_arg)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser(
        "add",
        help="create a schedule",
        epilog="example: python scheduler.py add --domain-config-id $(uuidgen) "
        "--domain example.com --frequency daily "
        '--time-config \'{"hour": 2, "minute": 0}\'',
    )
    _config_flags(p, required=True)
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_add)

    p = sub.add_parser(
        "update",
        help="change some fields of a schedule",
        epilog="example: python scheduler.py update ID --time-config '{\"hour\": 3}'",
    )
    p.add_argument("schedule_id", type=uuid_arg)
    _config_flags(p, required=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_update)

    for name, handler, text in (
        ("delete", cmd_delete, "delete a schedule (its history is kept)"),
        ("enable", cmd_enable, "enable a schedule"),
        ("disable", cmd_disable, "disable a schedule"),
    ):
        p = sub.add_parser(name, help=text, epilog=f"example: python scheduler.py {name} ID")
        p.add_argument("schedule_id", type=uuid_arg)
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=handler)

    p = sub.add_parser(
        "validate",
        help="check every schedule row; exit 1 if any is invalid",
        epilog="example: python scheduler.py validate --json",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_validate)


def public_schedule(schedule: Schedule) -> dict[str, Any]:
    return {k: v for k, v in schedule.to_dict().items() if k != "config_hash"}


def cmd_list(args: argparse.Namespace) -> int:
    rows = repository().list_schedules(
        enabled=True if args.enabled else None,
        domain=args.domain,
        source=args.source,
        tags=args.tags,
        limit=args.limit,
    )
    if args.json:
        print_json([public_schedule(r) for r in rows])
    else:
        print_table([r.to_dict() for r in rows], LIST_COLUMNS)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    repo = repository()
    schedule = repo.get_schedule(args.schedule_id)
    if schedule is None:
        return fail(str(ScheduleNotFound(args.schedule_id)))
    record = public_schedule(schedule)
    try:
        # The same parse the loader does, so `show` names the reason `last_error` would get.
        spec = Catalog(repo.default_timezone).parse(schedule).spec
        now = SYSTEM_CLOCK.now()
        record["upcoming"] = [t.isoformat() for t in fire_times(spec, None, now, 5)]
    except InvalidScheduleError as exc:
        record["invalid"] = exc.reason
    if args.json:
        print_json(record)
    else:
        print_record(record)
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    try:
        schedule_id = repository().create_schedule(
            domain_config_id=args.domain_config_id,
            domain=args.domain,
            frequency=args.frequency,
            time_config=args.time_config,
            enabled=not args.disabled,
            job_type=args.job_type,
            payload=args.payload or {},
            name=args.name,
            tags=args.tags or [],
            notify=args.notify or {},
            actor=actor(),
        )
    except InvalidScheduleError as exc:
        return fail(f"invalid schedule: {exc.reason}", EXIT_USAGE)
    return _print_schedule(args, schedule_id, "created")


def cmd_update(args: argparse.Namespace) -> int:
    changes = {
        field: value
        for field, value in (
            ("domain_config_id", args.domain_config_id),
            ("domain", args.domain),
            ("frequency", args.frequency),
            ("time_config", args.time_config),
            ("job_type", args.job_type),
            ("payload", args.payload),
            ("name", args.name),
            ("tags", args.tags),
            ("notify", args.notify),
        )
        if value is not None
    }
    if not changes:
        return fail("nothing to update: give at least one of the field flags", EXIT_USAGE)
    try:
        repository().update_schedule(args.schedule_id, actor=actor(), **changes)
    except ScheduleNotFound as exc:
        return fail(str(exc))
    except InvalidScheduleError as exc:
        return fail(f"invalid schedule: {exc.reason}", EXIT_USAGE)
    return _print_schedule(args, args.schedule_id, "updated")


def cmd_delete(args: argparse.Namespace) -> int:
    if not repository().delete_schedule(args.schedule_id, actor=actor()):
        return fail(str(ScheduleNotFound(args.schedule_id)))
    if args.json:
        print_json({"deleted": str(args.schedule_id)})
    else:
        print(f"deleted {args.schedule_id} (its history is kept)")
    return EXIT_OK


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_enabled(args, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_enabled(args, False)


def _set_enabled(args: argparse.Namespace, enabled: bool) -> int:
    try:
        repository().set_enabled(args.schedule_id, enabled, actor=actor())
    except ScheduleNotFound as exc:
        return fail(str(exc))
    return _print_schedule(args, args.schedule_id, "enabled" if enabled else "disabled")


def _print_schedule(args: argparse.Namespace, schedule_id: uuid.UUID, verb: str) -> int:
    schedule = repository().require_schedule(schedule_id)
    if args.json:
        print_json(public_schedule(schedule))
    else:
        print(f"{verb} {schedule_id}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Every row, checked by the same validator the daemon uses (not only rows it marked)."""
    repo = repository()
    problems = []
    for schedule in repo.list_schedules():
        try:
            validate_config(
                {k: getattr(schedule, k) for k in CONFIG_FIELDS},
                default_timezone=repo.default_timezone,
            )
        except InvalidScheduleError as exc:
            problems.append(
                {
                    "schedule_id": schedule.schedule_id,
                    "domain": schedule.domain,
                    "reason": exc.reason,
                }
            )
    if args.json:
        print_json({"invalid": problems, "valid": not problems})
    elif problems:
        print_table(problems, ["schedule_id", "domain", "reason"])
    else:
        print("every schedule is valid")
    return EXIT_FAILED if problems else EXIT_OK
