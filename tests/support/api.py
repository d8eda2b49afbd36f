"""The REST API as tests use it: `scheduler.py serve` as a process, an httpx client per role."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from database.connection import DatabaseConnection
from services.store.tokens import TokenStore
from tests.support.daemon import ROOT
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

# Every path of DESIGN.md's contract table but backfill, which lands with the overlap issue.
CONTRACT_PATHS = {
    "/api/v1/schedules": {"get", "post"},
    "/api/v1/schedules/{schedule_id}": {"get", "put", "patch", "delete"},
    "/api/v1/schedules/{schedule_id}/pause": {"post"},
    "/api/v1/schedules/{schedule_id}/resume": {"post"},
    "/api/v1/schedules/{schedule_id}/trigger": {"post"},
    "/api/v1/schedules/{schedule_id}/executions": {"get"},
    "/api/v1/schedules/{schedule_id}/audit": {"get"},
    "/api/v1/schedules/bulk/create": {"post"},
    "/api/v1/schedules/bulk/operation": {"post"},
    "/api/v1/executions": {"get"},
    "/api/v1/executions/running": {"get"},
    "/api/v1/executions/{execution_id}": {"get"},
    "/api/v1/executions/{execution_id}/cancel": {"post"},
    "/api/v1/executions/stats": {"get"},
    "/api/v1/executions/stats/{schedule_id}": {"get"},
    "/api/v1/scheduler/status": {"get"},
    "/api/v1/scheduler/pause": {"post"},
    "/api/v1/scheduler/resume": {"post"},
    "/api/v1/audit": {"get"},
    "/api/v1/tokens": {"get", "post"},
    "/api/v1/tokens/{name}": {"delete"},
    "/api/v1/channels": {"get", "post"},
    "/api/v1/channels/{name}": {"get", "delete"},
    "/api/v1/channels/{name}/test": {"post"},
    "/api/v1/notifications": {"get"},
}


class ServeProcess:
    """`python scheduler.py serve` on a free port of 127.0.0.1, with a test's environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "HTTP_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServeProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "scheduler.py", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._answers, timeout, 0.05, f"serve on {self.url}:\n{self.log()}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited ({self.process.returncode}):\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


@contextmanager
def serving(env: dict[str, str], log_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(env, log_path).start()
    try:
        yield server
    finally:
        server.stop()


def make_token(db: DatabaseConnection, name: str, role: str) -> str:
    return TokenStore(db).create(name, role)[1]


def client(base_url: str, token: str | None = None, **headers: str) -> httpx.Client:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=base_url, headers=headers, timeout=20.0)


def dashboard_login(http: httpx.Client, token: str, next_path: str = "/") -> httpx.Response:
    """Log `http` in to the dashboard with `token` (the login form and its CSRF cookie)."""
    form = http.get("/login", params={"next": next_path})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text
    return http.post(
        "/login", data={"csrf_token": csrf.group(1), "token": token, "next": next_path}
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is an application/problem+json answer with `status`; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    return body


def schedule_body(**overrides: Any) -> dict[str, Any]:
    """A valid schedule to create: a 10-minute interval http job."""
    body: dict[str, Any] = {
        "domain": "example.com",
        "frequency": "interval",
        "time_config": {"minutes": 10},
        "job_type": "http",
        "payload": {"url": "http://127.0.0.1:9/never"},
    }
    body.update(overrides)
    return body
