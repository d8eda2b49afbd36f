"""A private, throw-away PostgreSQL cluster for fault tests (stop it, restart it).

The shared server on 5432 must never be stopped by a test; this one is initialised with initdb in
its own temporary directory, listens on a free port of 127.0.0.1 with trust authentication and
`fsync=off`, and keeps its port across restarts. initdb and postgres refuse to run as root, so
they run as the `postgres` OS user when the tests run as root.

The postmaster is started as a direct child with a Linux parent-death signal, so a killed test
run never leaves a cluster behind; it is stopped with `pg_ctl stop -m fast` (the same fast
shutdown an operator would use), and `close()` removes the directory whatever happened.

    with PostgresServer() as server:
        url = server.create_database("app")      # then Migrator(url).apply()
        server.stop(); ...; server.start()       # same port, same data
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.managed import Managed
from tests.support.redis_server import free_port

BIN_DIR = Path(os.environ.get("TEST_PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
_PR_SET_PDEATHSIG = 1
# One initdb per test process and binary directory; later clusters copy its output (initdb
# costs 1.5-2 s on a loaded machine, a copy a tenth of that). Removed when the process exits.
_templates: dict[Path, Path] = {}


def _die_with_parent() -> None:
    # Runs in the child between fork and exec, after the switch to the postgres user (a change of
    # credentials clears the parent-death signal, so it is set here, not before).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a postmaster's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class PostgresServer(Managed):
    """One PostgreSQL cluster on 127.0.0.1, restartable on the same port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        bin_dir: Path = BIN_DIR,
        startup_timeout: float = 30.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self.settings = {
            "listen_addresses": self.host,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "16MB",
            **(settings or {}),
        }
        self.dir = Path(tempfile.mkdtemp(prefix="test-pg-"))
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "socket"
        self.log_path = self.dir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            self._as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    # -- addresses ----------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{OS_USER}@{self.host}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Initialise the cluster on first use, start it and wait until it accepts queries."""
        if self.running:
            raise RuntimeError(f"PostgreSQL on port {self.port} is already running")
        if not self._initialised:
            self._initdb()
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        args += ["-k", str(self.socket_dir)]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                **self._as_user,
            )
        self._wait_ready()

    def stop(self, timeout: float = 30.0) -> None:
        """`pg_ctl stop -m fast`: open connections are cut, the data stays. No-op if stopped."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            result = self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(round(timeout)))
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} did not stop: {result.stdout!r}\n"
                    f"{self.log_tail()}"
                ) from None
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend it had (a crashed host, as far as local
        processes go: their sockets close, nothing is flushed or handed over). No-op if stopped."""
        proc = self._proc
        if proc is None:
            return
        children = _children_of(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        self._proc = None

    def promote(self, timeout: float = 60.0) -> None:
        """`pg_ctl promote -w`: a standby becomes a primary; returns once it accepts writes."""
        result = self._pg_ctl("promote", "-w", "-t", str(round(timeout)))
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl promote failed: {result.stdout!r}\n{self.log_tail()}")

    def base_backup_from(self, source: PostgresServer) -> None:
        """Fill this (not yet started) cluster with `pg_basebackup -R -X stream` of `source`:
        started, it is a hot standby streaming from `source`."""
        if self._initialised:
            raise RuntimeError("base_backup_from needs a cluster that was never initialised")
        self._make_socket_dir()
        result = self._run_as_owner(
            [
                str(self.bin_dir / "pg_basebackup"),
                "-D", str(self.data_dir),
                "-h", source.host,
                "-p", str(source.port),
                "-U", OS_USER,
                "-R",
                "-X", "stream",
                "--checkpoint=fast",
                "--no-sync",
            ]
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed ({result.returncode}):\n{result.stderr}")
        self._initialised = True

    def close(self) -> None:
        """Stop the cluster (killing it if a clean stop fails) and remove its directory."""
        try:
            self.stop()
        except Exception:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None
            raise
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- databases ----------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create a database and return its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ----------------------------------------------------------------------------

    def _run_as_owner(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._as_user,
        )

    def _make_socket_dir(self) -> None:
        self.socket_dir.mkdir()
        if self._as_user:
            os.chown(self.socket_dir, self._as_user["user"], self._as_user["group"])

    def _initdb(self) -> None:
        self._make_socket_dir()
        template = _templates.get(self.bin_dir)
        if template is None:
            template = self.dir.parent / f"test-pg-template-{os.getpid()}-{len(_templates)}"
            self._run_initdb(template)
            _templates[self.bin_dir] = template
            atexit.register(shutil.rmtree, template, True)
        result = self._run_as_owner(["cp", "-a", str(template), str(self.data_dir)])
        if result.returncode != 0:
            raise RuntimeError(f"copying the initdb template failed:\n{result.stderr}")
        self._initialised = True

    def _run_initdb(self, data_dir: Path) -> None:
        result = self._run_as_owner(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(data_dir),
                "-U", OS_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stderr}")

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run_as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                self._proc = None
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} exited at start-up:\n{self.log_tail()}"
                )
            with contextlib.suppress(psycopg.Error):
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                    return
            time.sleep(0.05)
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None
        raise RuntimeError(
            f"PostgreSQL on port {self.port} not ready after {self.startup_timeout}s:\n"
            f"{self.log_tail()}"
        )
