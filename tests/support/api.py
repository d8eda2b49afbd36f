"""The REST API as tests use it: `scheduler.py serve` as a process, an httpx client per role."""

from __future__ import annotations

import os
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
