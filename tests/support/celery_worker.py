"""A test's own RabbitMQ vhost on the machine's broker, and a real Celery worker consuming it.

The vhost isolates each test (queues, messages, bindings) without touching the shared broker's
configuration beyond adding and deleting that one vhost. The worker runs the tasks of
`tests/integration/celery_tasks/tasks.py` as a subprocess and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
RABBIT = "127.0.0.1:5672"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A fresh vhost that guest may use; yields its broker URL and deletes it afterwards."""
    if shutil.which("rabbitmqctl") is None:  # a missing service fails loudly, never skips
        pytest.fail("rabbitmqctl is not installed: the celery tests need RabbitMQ on 5672")
    name = f"test_{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBIT}/{name}"
    finally:
        _rabbitmqctl("delete_vhost", name)


class CeleryWorker:
    """`celery worker --pool=solo` on one queue, recording into Redis under `prefix`."""

    def __init__(
        self, broker: str, backend: str, redis_url: str, prefix: str, queue: str, log: Path
    ) -> None:
        self.broker, self.backend, self.queue, self.log_path = broker, backend, queue, log
        self.redis_url, self.prefix = redis_url, prefix
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> CeleryWorker:
        env = {
            **os.environ,
            "CELERY_TEST_BROKER": self.broker,
            "CELERY_TEST_BACKEND": self.backend,
            "CELERY_TEST_REDIS": self.redis_url,
            "CELERY_TEST_PREFIX": self.prefix,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery"),
                    *("-A", "tests.integration.celery_tasks.tasks", "worker"),
                    *("--pool=solo", "--concurrency=1", "-Q", self.queue, "-l", "info"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                    *("-n", f"{self.queue}@%h"),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._ready, timeout, 0.1, f"celery worker ready:\n{self.tail()}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"celery worker exited:\n{self.tail()}")
        return " ready." in self.log_text()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def records(self) -> list[dict[str, Any]]:
        """What each `tasks.record` call saw, in the order the worker ran them."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            raw = client.lrange(f"{self.prefix}celery:record", 0, -1)
        finally:
            client.close()
        return [json.loads(item) for item in raw]  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGQUIT (a cold shutdown: nothing is left to finish), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGQUIT)
        try:
            # A solo-pool worker blocked in its broker loop often ignores the cold shutdown for
            # ~10 s; its state is thrown away with the test's vhost, so it is not waited for.
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def forget_results(redis_url: str, task_ids: list[str]) -> None:
    """Deletes the result keys the worker wrote for these tasks (Celery's own key names)."""
    if not task_ids:
        return
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*(f"celery-task-meta-{task_id}" for task_id in task_ids))
    finally:
        client.close()
