"""`import-celery-beat --dsn DSN [--dry-run] [--json] [--domain D]`: django-celery-beat's
PeriodicTask rows become `celery` schedules.

Each task is planned first (services/model/celery_beat.py), then checked as any schedule is;
`--dry-run` prints that plan and writes nothing. Imported schedules carry the task's name and
the tag `celery-beat`; a task whose name is already among them is left alone, so running the
import again only adds what is new. Exit 0 when the tables were read (skipped tasks are reported,
not failures); 1 when the DSN cannot be read or holds no django-celery-beat tables.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from services.cli.common import EXIT_OK, fail, print_json
from services.cli.context import actor, repository
from services.config import get_settings
from services.errors import InvalidScheduleError, SchedulerError
from services.model.celery_beat import DEFAULT_DOMAIN, IMPORT_TAG, PlannedSchedule, plan_schedule
from services.model.celery_payload import task_allowed
from services.model.schedule_config import validate_config
from services.model.vocabulary import JobType
from services.store.celery_beat import read_beat_tasks
from services.store.schedules import ScheduleRepository


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn", required=True, help="PostgreSQL URL of the database django-celery-beat uses"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be created; write nothing"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--domain", default=DEFAULT_DOMAIN, help=f"the schedules' domain (default {DEFAULT_DOMAIN})"
    )


def run(args: argparse.Namespace) -> int:
    try:
        tasks = read_beat_tasks(args.dsn)
    except SchedulerError as exc:
        return fail(f"cannot read django-celery-beat tables: {exc}")
    repo = repository()
    imported = {
        s.name for s in repo.list_schedules(tags=[IMPORT_TAG]) if s.job_type == JobType.CELERY
    }
    items = [
        _apply(repo, plan_schedule(task), args.domain, imported, dry_run=args.dry_run)
        for task in tasks
    ]
    counts: dict[str, int] = {}
    for item in items:
        counts[item["action"]] = counts.get(item["action"], 0) + 1
    if args.json:
        print_json({"dry_run": args.dry_run, "counts": counts, "items": items})
    else:
        _print_text(items, counts, args.dry_run)
    return EXIT_OK


def _config(plan: PlannedSchedule, domain: str) -> dict[str, Any]:
    return {
        "domain_config_id": plan.domain_config_id,
        "domain": domain,
        "name": plan.name,
        "frequency": plan.frequency,
        "time_config": plan.time_config,
        "enabled": plan.enabled,
        "job_type": JobType.CELERY.value,
        "payload": plan.payload,
        "tags": [IMPORT_TAG],
    }


def _apply(
    repo: ScheduleRepository,
    plan: PlannedSchedule,
    domain: str,
    imported: set[str | None],
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """One task's line of the report, after creating its schedule unless `dry_run`."""
    item: dict[str, Any] = {"name": plan.name, "task": plan.task}
    if plan.skipped is not None:
        return {**item, "action": "skipped", "reason": plan.skipped}
    item.update(frequency=plan.frequency, time_config=plan.time_config, enabled=plan.enabled)
    if plan.name in imported:
        return {**item, "action": "exists", "reason": "imported before (same name)"}
    settings = get_settings()
    if not task_allowed(plan.task, settings.celery_task_allowlist):
        # Imported all the same: the daemons' allowlist may differ from this shell's.
        item["warning"] = "task not under this environment's CELERY_TASK_ALLOWLIST"
    config = _config(plan, domain)
    try:
        validate_config(config, default_timezone=settings.scheduler_timezone)
        if dry_run:
            return {**item, "action": "create"}
        schedule_id = repo.create_schedule(**config, actor=actor())
    except InvalidScheduleError as exc:
        return {**item, "action": "invalid", "reason": exc.reason}
    return {**item, "action": "created", "schedule_id": str(schedule_id)}


def _print_text(items: list[dict[str, Any]], counts: dict[str, int], dry_run: bool) -> None:
    for item in items:
        timing = ""
        if "frequency" in item:
            timing = f" {item['frequency']} {json.dumps(item['time_config'], sort_keys=True)}"
        reason = f": {item['reason']}" if "reason" in item else ""
        warning = f" (warning: {item['warning']})" if "warning" in item else ""
        print(f"{item['action']:<8} {item['name']} ({item['task']}){timing}{reason}{warning}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no periodic tasks"
    print(f"{'dry run, would apply: ' if dry_run else ''}{summary}")
