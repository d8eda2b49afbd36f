"""Run commands: trigger, cancel, history, stats, cleanup, status (the pause included)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any
from uuid import UUID

import redis

from services.cli.common import EXIT_FAILED, EXIT_OK, fail, print_json, print_record, print_table
from services.cli.context import (
    history,
    key_prefix,
    redis_client,
    repository,
    run_requests,
    scheduler_state,
)
from services.cli.pause import describe_pause
from services.cli.schedules import uuid_arg
from services.clock import SYSTEM_CLOCK, Clock
from services.engine.liveness import instance_summaries
from services.errors import ScheduleNotFound
from services.lock.sentinel import endpoint as redis_endpoint
from services.model.occurrence import RunReport
from services.model.records import Execution
from services.model.shards import owned_label
from services.store.run_requests import RunRequest

# `trigger --local`: run a schedule in this process (scheduler.py passes the daemon's own).
LocalTrigger = Callable[[UUID], RunReport]
NEXT_DUE_COLUMNS = ["schedule_id", "domain", "frequency", "next_run"]
HISTORY_COLUMNS = [
    "execution_id",
    "schedule_id",
    "status",
    "trigger",
    "attempt",
    "scheduled_for",
    "duration_seconds",
    "error_message",
]


CLOCK: Clock = SYSTEM_CLOCK  # the CLI is the program's edge: it reads the real time


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], *, trigger_locally: LocalTrigger
) -> None:
    p = sub.add_parser(
        "trigger",
        help="ask a live daemon to run a schedule now",
        epilog="example: python scheduler.py trigger ID --wait",
    )
    p.add_argument("schedule_id", type=uuid_arg)
    p.add_argument("--wait", action="store_true", help="wait for the run and print it")
    p.add_argument(
        "--local",
        action="store_true",
        help="run it in this process (same lock and history) instead of a daemon",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=functools.partial(cmd_trigger, trigger_locally=trigger_locally))

    p = sub.add_parser(
        "cancel",
        help="stop a running execution",
        epilog="example: python scheduler.py cancel EXECUTION_ID",
    )
    p.add_argument("execution_id", type=uuid_arg)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_cancel)

    p = sub.add_parser(
        "history",
        help="recent executions",
        epilog="example: python scheduler.py history --status failed --hours 6",
    )
    p.add_argument("--schedule", type=uuid_arg, dest="schedule_id")
    p.add_argument(
        "--status",
        choices=[
            "running",
            "completed",
            "failed",
            "timed_out",
            "abandoned",
            "cancelled",
            "skipped",
            "queued",
        ],
    )
    p.add_argument("--hours", type=float, default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser(
        "stats",
        help="execution statistics",
        epilog="example: python scheduler.py stats --days 7 --json",
    )
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser(
        "cleanup",
        help="delete finished executions older than D days",
        epilog="example: python scheduler.py cleanup --days 90",
    )
    p.add_argument("--days", type=float, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_cleanup)

    p = sub.add_parser(
        "status",
        help="live instances, running executions, locks, next runs",
        epilog="example: python scheduler.py status --json",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)


def live_instances() -> list[dict[str, Any]]:
    """Instances whose heartbeat key exists, with the summary each keeps beside it."""
    return instance_summaries(redis_client(), key_prefix())


def cmd_trigger(args: argparse.Namespace, *, trigger_locally: LocalTrigger) -> int:
    if repository().get_schedule(args.schedule_id) is None:
        return fail(str(ScheduleNotFound(args.schedule_id)))
    if args.local:
        return _trigger_locally(args, trigger_locally)
    try:
        alive = live_instances()
    except redis.RedisError as exc:
        return fail(f"cannot reach Redis to find live instances: {exc}")
    if not alive:
        return fail(
            "no live scheduler instance (no heartbeat in Redis); start one with "
            "`python scheduler.py run`, or use --local to run it in this process"
        )
    request = run_requests().request_trigger(args.schedule_id)
    deadline = CLOCK.monotonic() + args.timeout
    done = _wait_for_request(request.request_id, deadline, claimed_only=not args.wait)
    if done is None:
        return fail(f"no instance took the request within {args.timeout:g}s")
    if not args.wait:
        result = {"request_id": done.request_id, "claimed_by": done.claimed_by}
        print_json(result) if args.json else print(f"triggered; taken by {done.claimed_by}")
        return EXIT_OK
    execution = history().get_execution(done.execution_id) if done.execution_id else None
    if execution is None:
        return fail(f"the run did not start: {done.result}")
    return _print_execution(args, execution)


def _trigger_locally(args: argparse.Namespace, trigger_locally: LocalTrigger) -> int:
    report = trigger_locally(args.schedule_id)
    if report.execution_id is None:
        return fail(f"the run did not start: {report.status}: {report.detail}")
    execution = history().get_execution(report.execution_id)
    assert execution is not None
    return _print_execution(args, execution)


def _wait_for_request(
    request_id: UUID, deadline: float, *, claimed_only: bool
) -> RunRequest | None:
    while True:
        request = run_requests().get(request_id)
        if request is not None and (request.done_at or (claimed_only and request.claimed_by)):
            return request
        if CLOCK.monotonic() >= deadline:
            return None
        CLOCK.sleep(0.05)


def _print_execution(args: argparse.Namespace, execution: Execution) -> int:
    record = execution.to_dict()
    if args.json:
        print_json(record)
    else:
        print_record(record)
    return EXIT_OK if execution.status == "completed" else EXIT_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    execution = history().get_execution(args.execution_id)
    if execution is None:
        return fail(f"no execution with id {args.execution_id}")
    if execution.status != "running":
        return fail(f"execution {args.execution_id} is not running (status {execution.status})")
    run_requests().request_cancel(args.execution_id)
    deadline = CLOCK.monotonic() + args.timeout
    while (current := history().get_execution(args.execution_id)) is not None and (
        current.status == "running" and CLOCK.monotonic() < deadline
    ):
        CLOCK.sleep(0.1)
    assert current is not None
    if current.status == "running":
        return fail(
            f"execution {args.execution_id} still running after {args.timeout:g}s "
            f"(its instance {execution.instance_id} may be unreachable)"
        )
    if args.json:
        print_json(current.to_dict())
    else:
        print(f"execution {args.execution_id} ended {current.status}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    rows = history().find_executions(
        schedule_id=args.schedule_id, status=args.status, hours=args.hours, limit=args.limit
    )
    if args.json:
        print_json([r.to_dict() for r in rows])
    else:
        print_table([r.to_dict() for r in rows], HISTORY_COLUMNS)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    stats = history().get_execution_statistics(days=args.days)
    if args.json:
        print_json(stats)
    else:
        print_record(stats)
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    deleted = history().cleanup_old_executions(days=args.days)
    if args.json:
        print_json({"deleted": deleted})
    else:
        print(f"deleted {deleted} finished executions older than {args.days:g} days")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    problems: list[str] = []
    instances: list[dict[str, Any]] = []
    locks: list[dict[str, Any]] = []
    client = redis_client()
    try:
        instances = live_instances()
        prefix = key_prefix()
        for key in client.scan_iter(match=f"{prefix}lock:*", count=500):
            locks.append(
                {
                    "key": str(key)[len(prefix) :],
                    "holder": client.get(key),
                    "ttl_ms": client.pttl(key),
                }
            )
    except redis.RedisError as exc:
        problems.append(f"redis: {exc}")
    pause = scheduler_state().get()
    running = [e.to_dict() for e in history().get_running_executions()]
    due = next_due(limit=10)
    where = redis_endpoint(client)  # after the reads above: the master they reached
    report = {
        "redis": where,
        "paused": pause.to_dict(),
        "instances": instances,
        "running_executions": running,
        "locks": locks,
        "next_runs": due,
        "problems": problems,
    }
    if args.json:
        print_json(report)
    else:
        print(describe_pause(pause))
        print(f"redis ({where['mode']}): {where['master'] or 'not reached'}")
        print(f"\nlive instances: {len(instances)}")
        # `paused`: what each instance believes (it follows the pause within a second).
        rows = [{**i, "shards": owned_label(i.get("shards"))} for i in instances]
        print_table(
            rows, ["instance_id", "started_at", "jobs_loaded", "running", "paused", "shards"]
        )
        for instance in instances:
            last = instance.get("last_watcher_pass") or {}
            sync = instance.get("last_sync")
            print(
                f"  {instance['instance_id']}: last watcher pass {last.get('at', '-')}"
                f" ({last.get('kind', '-')}), last sync {sync or '-'}"
            )
        print(f"\nrunning executions: {len(running)}")
        print_table(running, ["execution_id", "schedule_id", "instance_id", "started_at"])
        print(f"\nlocks held: {len(locks)}")
        print_table(locks, ["key", "holder", "ttl_ms"])
        print("\nnext runs due:")
        print_table(due, NEXT_DUE_COLUMNS)
        for problem in problems:
            print(f"problem: {problem}")
    return EXIT_FAILED if problems else EXIT_OK


def next_due(limit: int) -> list[dict[str, Any]]:
    """The enabled schedules due soonest (the columns `status` shows)."""
    return [{c: getattr(s, c) for c in NEXT_DUE_COLUMNS} for s in repository().next_due(limit)]
