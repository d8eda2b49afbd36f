"""Pause commands: `pause --all --note N` / `resume --all` (every instance: a maintenance
window) and `pause ID [--note N]` / `resume ID` (one schedule: disabled with a note)."""

from __future__ import annotations

import argparse

from services.cli.common import EXIT_OK, EXIT_USAGE, fail, print_json
from services.cli.context import actor, repository, scheduler_state
from services.cli.schedules import public_schedule, uuid_arg
from services.errors import InvalidPauseRequest, ScheduleNotFound
from services.model.records import SchedulerPause


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pause",
        help="pause one schedule, or with --all the whole scheduler (runs already going finish)",
        epilog="examples: python scheduler.py pause --all --note 'database upgrade'; "
        "python scheduler.py pause ID --note 'flaky target'",
    )
    p.add_argument("schedule_id", type=uuid_arg, nargs="?", help="the schedule to pause")
    p.add_argument(
        "--all",
        action="store_true",
        help="pause every instance: each occurrence due meanwhile is recorded skipped",
    )
    p.add_argument("--note", help="why (required with --all); shown in skipped rows and status")
    p.add_argument("--json", action="store_true", help="print the resulting record")
    p.set_defaults(handler=cmd_pause)

    p = sub.add_parser(
        "resume",
        help="resume one schedule, or with --all the whole scheduler",
        epilog="examples: python scheduler.py resume --all; python scheduler.py resume ID",
    )
    p.add_argument("schedule_id", type=uuid_arg, nargs="?", help="the schedule to resume")
    p.add_argument("--all", action="store_true", help="end the scheduler-wide pause")
    p.add_argument("--json", action="store_true", help="print the resulting record")
    p.set_defaults(handler=cmd_resume)


def _target_error(args: argparse.Namespace) -> str | None:
    """Exactly one target: a schedule or --all."""
    if args.all and args.schedule_id is not None:
        return f"give a schedule id or --all, not both, to {args.command}"
    if not args.all and args.schedule_id is None:
        return f"say what to {args.command}: a schedule id, or --all for the whole scheduler"
    return None


def cmd_pause(args: argparse.Namespace) -> int:
    problem = _target_error(args)
    if problem is not None:
        return fail(problem, EXIT_USAGE)
    who = actor()
    if args.all:
        if args.note is None:
            return fail("pause --all needs --note saying why (every skip shows it)", EXIT_USAGE)
        try:
            state = scheduler_state().pause(args.note, by=who)
        except InvalidPauseRequest as exc:
            return fail(str(exc), EXIT_USAGE)
        return _print_state(args, state)
    try:
        schedule = repository().pause_schedule(args.schedule_id, note=args.note, by=who, actor=who)
    except ScheduleNotFound as exc:
        return fail(str(exc))
    if args.json:
        print_json(public_schedule(schedule))
    else:
        note = f": {schedule.paused_note}" if schedule.paused_note else ""
        print(f"paused {schedule.schedule_id}{note}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    problem = _target_error(args)
    if problem is not None:
        return fail(problem, EXIT_USAGE)
    if args.all:
        return _print_state(args, scheduler_state().resume())
    try:
        schedule = repository().resume_schedule(args.schedule_id, actor=actor())
    except ScheduleNotFound as exc:
        return fail(str(exc))
    if args.json:
        print_json(public_schedule(schedule))
    else:
        print(f"resumed {schedule.schedule_id}")
    return EXIT_OK


def _print_state(args: argparse.Namespace, state: SchedulerPause) -> int:
    if args.json:
        print_json(state.to_dict())
    else:
        print(describe_pause(state))
    return EXIT_OK


def describe_pause(state: SchedulerPause) -> str:
    """One line on the scheduler-wide pause (also what `status` prints)."""
    if not state.paused:
        return "scheduler running (not paused)"
    since = "" if state.paused_at is None else f" since {state.paused_at.isoformat()}"
    return f"scheduler paused{since} by {state.paused_by or '-'}: {state.note}"
