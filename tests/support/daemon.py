"""Real daemon processes for tests: `python scheduler.py run` with a test's own environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class DaemonProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *, instance_id: str) -> None:
        self.env = {**os.environ, **env, "INSTANCE_ID": instance_id}
        self.log_path = log_path
        self.instance_id = instance_id
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "scheduler.py", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait_ready:
            self.wait_for_event("scheduler.started", timeout=timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (other lines are ignored)."""
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    def wait_for_event(self, name: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self._fail_if_exited(name)
            for event in self.events():
                if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                    return event
            return None

        return wait_until(
            found,
            timeout,
            0.05,
            f"log event {name} {fields or ''} from {self.instance_id}:\n{self.tail()}",
        )

    def _fail_if_exited(self, waiting_for: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"daemon {self.instance_id} exited ({self.process.returncode}) while waiting for "
                f"{waiting_for}:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the instance dies without any clean-up."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


Spawn = Callable[..., DaemonProcess]


def daemon_spawner(tmp_path: Path) -> Iterator[Spawn]:
    """A fixture body: makes daemon processes (not started), logging under `tmp_path`;
    whatever is still alive at the end is killed (and thawed first, if a test froze it)."""
    made: list[DaemonProcess] = []

    def make(
        environ: dict[str, str], instance_id: str, log_name: str | None = None
    ) -> DaemonProcess:
        daemon = DaemonProcess(
            environ, tmp_path / f"{log_name or instance_id}.log", instance_id=instance_id
        )
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None and daemon.process.poll() is None:
            os.kill(daemon.pid, signal.SIGCONT)
            daemon.kill()


def start_all(daemons: Iterable[DaemonProcess], timeout: float = 60.0) -> None:
    """Start the processes together (they boot in parallel) and wait until each is firing."""
    daemons = list(daemons)
    for daemon in daemons:
        daemon.start(wait_ready=False)
    for daemon in daemons:
        daemon.wait_for_event("scheduler.started", timeout=timeout)
