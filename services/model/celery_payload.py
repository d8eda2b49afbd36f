"""What a `celery` job's payload must hold, checked without I/O.

`task` names a Celery task under a `CELERY_TASK_ALLOWLIST` prefix; `args` (list), `kwargs`
(object), `queue` (name) and `wait` (bool) are optional. Writers (CLI, REST API, sync) check the
shape only, since the allowlist is the daemon's setting; the daemon's catalog and the handler check
the allowlist too, so a refused task marks the row invalid and is never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def task_allowed(task: str, allowlist: Sequence[str]) -> bool:
    """Whether `task` is, or is under, a listed prefix, compared by whole dotted components:
    `proj.tasks` covers `proj.tasks.add` but not `proj.tasksx.add` (a plain string prefix would)."""
    parts = task.split(".")
    for entry in allowlist:
        prefix = entry.strip().rstrip(".").split(".")
        if prefix != [""] and parts[: len(prefix)] == prefix:
            return True
    return False


def celery_payload_problems(
    payload: Mapping[str, Any], allowlist: Sequence[str] | None
) -> list[str]:
    """Every reason `payload` cannot be sent; `allowlist` None skips the allowlist check."""
    problems: list[str] = []
    task = payload.get("task")
    if not isinstance(task, str) or not task.strip():
        problems.append("celery job needs payload.task: a task name such as 'proj.tasks.add'")
    elif allowlist is not None and not task_allowed(task, allowlist):
        allowed = ", ".join(a for a in allowlist if a.strip()) or "nothing"
        problems.append(
            f"celery task {task!r} is not under CELERY_TASK_ALLOWLIST (allowed: {allowed})"
        )
    if not isinstance(payload.get("args", []), list):
        problems.append(f"payload.args must be a list, got {type(payload['args']).__name__}")
    kwargs = payload.get("kwargs", {})
    if not isinstance(kwargs, dict):
        problems.append(f"payload.kwargs must be an object, got {type(kwargs).__name__}")
    queue = payload.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        problems.append(f"payload.queue must be a non-empty string, got {queue!r}")
    wait = payload.get("wait", False)
    if not isinstance(wait, bool):
        problems.append(f"payload.wait must be true or false, got {wait!r}")
    return problems
