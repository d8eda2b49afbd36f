"""Tasks for the test worker, configured entirely from the environment its test sets:
CELERY_TEST_BROKER, CELERY_TEST_BACKEND, CELERY_TEST_REDIS and CELERY_TEST_PREFIX (the test's
Redis key prefix, under which `record` writes what each message carried)."""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery, Task

app = Celery(
    "scheduler_test_tasks",
    broker=os.environ["CELERY_TEST_BROKER"],
    backend=os.environ["CELERY_TEST_BACKEND"],
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_redis = redis.Redis.from_url(os.environ["CELERY_TEST_REDIS"])
_prefix = os.environ["CELERY_TEST_PREFIX"]


@app.task(name="tasks.ok")
def ok(x: int = 0, y: int = 0) -> dict[str, Any]:
    return {"sum": x + y}


@app.task(name="tasks.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task(name="tasks.record", bind=True)
def record(self: Task, *args: Any, **kwargs: Any) -> str:
    """Writes the task id, arguments and headers it was given under the test's prefix."""
    request = self.request
    seen = {
        "task_id": request.id,
        "args": list(args),
        "kwargs": kwargs,
        "idempotency_key": request.get("Idempotency-Key"),
        "scheduler": request.get("scheduler"),
        "headers": request.headers,
    }
    _redis.rpush(f"{_prefix}celery:record", json.dumps(seen, default=repr))
    return str(request.id)
