"""The `command` job: run an allowlisted program (never a shell) in a session of its own.

The process group is the unit of ownership: a time-out or a cancel kills all of it, and whatever the
command left running in it is killed when it exits, so nothing keeps working after its run
(and its lock) ended. If the daemon itself dies, even by SIGKILL, the command warden (warden.py)
kills the command's whole session.

No pre-exec callable: with one, CPython must fork() the whole daemon for every run (its cost grows
with the daemon's memory) and run Python code in the child, which is unsafe in a threaded
program. Without one, `start_new_session` and `pass_fds` included, it uses vfork().
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, Any

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers.base import (
    TAIL_CHARS,
    JobContext,
    JobOutcome,
    format_utc,
    run_guarded,
    tail,
)
from services.engine.handlers.warden import CommandWarden, shared_warden
from services.model.vocabulary import ExecutionStatus

EX_TEMPFAIL = 75
# The wait loop starts polling fast (short commands finish with little delay) and backs off.
_POLL_FIRST_S = 0.001
_POLL_S = 0.05
# Reader threads still blocked this long after the group is gone are left behind (a process
# that escaped the group with setsid may hold the pipe); they end when it closes.
_READER_JOIN_S = 1.0

DAEMON_SECRET_VARIABLES = frozenset(
    {"DATABASE_URL", "REDIS_URL", "REDIS_PASSWORD", "API_TOKEN", "TEST_DATABASE_URL"}
)


class _Tail:
    """The last `limit` bytes of a stream, filled by a reader thread that never blocks the child."""

    def __init__(self, stream: IO[bytes], limit: int = TAIL_CHARS) -> None:
        self._stream = stream
        self._limit = limit
        self._data = bytearray()
        self.total = 0
        self.thread = threading.Thread(target=self._drain, name="command-output", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        with self._stream:
            while chunk := os.read(self._stream.fileno(), 65536):
                self.total += len(chunk)
                self._data += chunk
                if len(self._data) > self._limit:
                    del self._data[: len(self._data) - self._limit]

    def text(self) -> str:
        return bytes(self._data).decode("utf-8", errors="replace")


def _exited(pid: int) -> bool:
    """True once the leader has exited, without reaping it: while it is an unreaped zombie its
    pid, and so its process group id, cannot be reused, which keeps `killpg` aimed right."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


class CommandHandler:
    def __init__(
        self,
        *,
        allowlist: Sequence[str],
        kill_grace: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        warden: CommandWarden | None = None,
    ) -> None:
        self._clock = clock
        self._allowlist = tuple(entry for entry in (e.strip() for e in allowlist) if entry)
        self._kill_grace = kill_grace
        self._warden = shared_warden() if warden is None else warden
        self._warden.check_supported()  # built at start-up: a missing warden is said then, once

    def run(self, ctx: JobContext) -> JobOutcome:
        return run_guarded(ctx, "command", self._run)

    def _resolve(self, argv: object) -> tuple[list[str], str] | JobOutcome:
        """The argv and the executable to start, or the refusal explaining why not."""
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(arg, str) for arg in argv)
            or not argv[0]
        ):
            return JobOutcome.failure(
                "invalid_argv",
                "command job needs payload.argv: a non-empty list of strings",
                retryable=False,
            )
        program = argv[0]
        if program not in self._allowlist:
            allowed = ", ".join(self._allowlist) or "nothing"
            return JobOutcome.failure(
                "command_not_allowed",
                f"command {program!r} is not in COMMAND_ALLOWLIST (allowed: {allowed})",
                retryable=False,
                program=program,
            )
        if "/" in program:
            return argv, program
        found = shutil.which(program)
        if found is None:
            return JobOutcome.failure(
                "command_not_found",
                f"command {program!r} is allowlisted but not found on PATH",
                retryable=False,
                program=program,
            )
        return argv, found

    @staticmethod
    def _environment(ctx: JobContext) -> dict[str, str]:
        # The daemon's own credentials are not the job's business.
        env = {k: v for k, v in os.environ.items() if k not in DAEMON_SECRET_VARIABLES}
        env.update(
            SCHEDULE_ID=str(ctx.schedule_id),
            EXECUTION_ID=str(ctx.execution_id),
            SCHEDULED_FOR=format_utc(ctx.scheduled_for),
            DOMAIN=ctx.domain,
            PAYLOAD=json.dumps(dict(ctx.payload), default=str),
            ATTEMPT=str(ctx.attempt),
            IDEMPOTENCY_KEY=ctx.idempotency_key(),
        )
        return env

    def _run(self, ctx: JobContext) -> JobOutcome:
        resolved = self._resolve(ctx.payload.get("argv"))
        if isinstance(resolved, JobOutcome):
            ctx.log.warning("handler.command.refused", reason=resolved.error_message)
            return resolved
        argv, executable = resolved

        started = self._clock.monotonic()
        deadline = started + ctx.timeout
        try:
            proc = self._spawn(argv, executable, self._environment(ctx))
        except OSError as exc:
            ctx.log.warning("handler.command.start_failed", program=argv[0], error=str(exc))
            return JobOutcome.failure(
                "start_failed", f"command {argv[0]!r} could not start: {exc}", retryable=False
            )
        self._warden.watch(proc.pid)
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = _Tail(proc.stdout), _Tail(proc.stderr)
        ctx.log.debug("handler.command.started", program=argv[0], pid=proc.pid)

        try:
            stop = self._wait(proc.pid, deadline, ctx.cancel_event)
            if stop is not None:
                self._terminate(proc.pid)
        finally:
            # Anything the command left in its group dies with the run; the leader is not yet
            # reaped, so its pid still names this group. Also runs if waiting itself failed.
            _signal_group(proc.pid, signal.SIGKILL)
            self._warden.forget(proc.pid)  # before the reap, while the id names this session only
            returncode = proc.wait()
        for reader in (stdout, stderr):
            reader.thread.join(_READER_JOIN_S)
        duration = self._clock.monotonic() - started
        ctx.log.info(
            "handler.command.finished",
            returncode=returncode,
            stopped=None if stop is None else stop.value,
            duration_s=round(duration, 3),
        )
        return self._outcome(argv[0], returncode, stop, stdout, stderr, ctx.timeout)

    def _spawn(
        self, argv: list[str], executable: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """The child, leader of a new session, holding the warden's lifeline from its creation."""
        return subprocess.Popen(
            argv,
            executable=executable,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            pass_fds=self._warden.lifeline(),
        )

    def _wait(self, pid: int, deadline: float, cancel: threading.Event) -> ExecutionStatus | None:
        """Waits for the leader to exit; TIMED_OUT or CANCELLED when the run must stop first."""
        pause = _POLL_FIRST_S
        while not _exited(pid):
            if self._clock.monotonic() >= deadline:
                return ExecutionStatus.TIMED_OUT
            if cancel.wait(pause):
                return ExecutionStatus.CANCELLED
            pause = min(pause * 2, _POLL_S)
        return None

    def _terminate(self, pgid: int) -> None:
        """SIGTERM the group, give the leader a grace period; the caller then SIGKILLs the rest."""
        _signal_group(pgid, signal.SIGTERM)
        grace_end = self._clock.monotonic() + self._kill_grace
        while not _exited(pgid) and self._clock.monotonic() < grace_end:
            self._clock.sleep(_POLL_S)

    @staticmethod
    def _outcome(
        program: str,
        returncode: int,
        stop: ExecutionStatus | None,
        stdout: _Tail,
        stderr: _Tail,
        timeout: float,
    ) -> JobOutcome:
        output: dict[str, Any] = {
            "returncode": returncode,
            "stdout_tail": stdout.text(),
            "stderr_tail": stderr.text(),
            "stdout_bytes": stdout.total,
            "stderr_bytes": stderr.total,
        }
        if returncode == 0 and stop is None:
            return JobOutcome(status=ExecutionStatus.COMPLETED, metadata=output)
        # The output stays in metadata; error_details repeats only what explains the failure.
        details: dict[str, Any] = {"returncode": returncode, "stderr_tail": output["stderr_tail"]}
        if stop is ExecutionStatus.TIMED_OUT:
            return JobOutcome.failure(
                "timeout",
                f"command {program!r} timed out after {timeout:g} s; its process group was killed",
                retryable=True,
                status=stop,
                metadata=output,
                **details,
            )
        if stop is ExecutionStatus.CANCELLED:
            return JobOutcome.failure(
                "cancelled",
                f"command {program!r} was cancelled; its process group was killed",
                retryable=False,
                status=stop,
                metadata=output,
                **details,
            )
        if returncode < 0:
            name = _signal_name(-returncode)
            return JobOutcome.failure(
                "killed",
                f"command {program!r} was killed by {name}",
                retryable=False,
                metadata=output,
                signal=name,
                **details,
            )
        last_line = next(
            (line for line in reversed(output["stderr_tail"].splitlines()) if line.strip()), ""
        )
        message = f"command {program!r} exited with code {returncode}"
        if last_line:
            message += f": {tail(last_line.strip(), 500)}"
        return JobOutcome.failure(
            "exit_code",
            message,
            retryable=returncode == EX_TEMPFAIL,
            metadata=output,
            exit_code=returncode,
            **details,
        )
