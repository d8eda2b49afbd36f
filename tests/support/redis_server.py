"""A private, throw-away redis-server for fault tests (stop it, restart it, freeze it).

The shared Redis on 6379 must never be stopped by a test; this one runs on a free port in its own
temporary directory, without persistence, and is killed with its test process (Linux
parent-death signal) even when the test run itself is killed.

    with RedisServer() as server:
        client = create_redis_client(server.url, socket_timeout=0.2)
        server.pause(); ...; server.resume()
        server.stop(); ...; server.start()   # same port, empty data
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.managed import Managed

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port nobody listens on right now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a killed test run must not leave servers behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class RedisServer(Managed):
    """One redis-server process on 127.0.0.1, restartable on the same port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str = "redis-server",
        startup_timeout: float = 10.0,
        extra_args: tuple[str, ...] = (),
        password: str | None = None,
        config_file: Path | None = None,
    ):
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.password = password  # requirepass, and masterauth for when it becomes a replica
        self.config_file = config_file  # read first (a sentinel's, which it rewrites)
        self.dir = Path(tempfile.mkdtemp(prefix="test-redis-"))
        self.paused = False
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        auth = ("--requirepass", self.password, "--masterauth", self.password)
        args = [
            self.executable,
            *([str(self.config_file)] if self.config_file is not None else []),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
            *(auth if self.password else ()),
            *self.extra_args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.paused = False
        self._wait_ready()

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the server down (its data is gone: no persistence); no-op if not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.resume()  # a stopped process would not handle SIGTERM until continued
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._proc = None
        self.paused = False

    def kill(self) -> None:
        """SIGKILL by PID, as a crashed host would go (nothing flushed, no goodbye)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(5.0)
        self._proc = None
        self.paused = False

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, requests hang until resume()."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.running:
            self._signal(signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal(self, signum: int) -> None:
        if not self.running or self._proc is None:
            raise RuntimeError(f"redis-server on port {self.port} is not running")
        os.kill(self._proc.pid, signum)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                self.stop()
                raise RuntimeError(
                    f"redis-server on port {self.port} exited at start-up:\n{self.log_tail()}"
                )
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server on port {self.port} not ready after {self.startup_timeout}s:\n"
            f"{self.log_tail()}"
        )

    def _answers_ping(self) -> bool:
        with contextlib.suppress(OSError):
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                reply = b""
                while reply.count(b"\r\n") < (2 if self.password else 1):
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    reply += chunk
                return reply.endswith(b"+PONG\r\n")
        return False
