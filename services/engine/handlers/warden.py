"""`CommandWarden`: the daemon's side of the process that kills command jobs when the daemon dies.

A command runs in its own session (and process group). A kill -9 of the daemon must not leave
it, or anything it started, running without its run, its lock or its time-out. The kernel's
parent-death signal would only reach the direct child, it needs a pre-exec callable (a full fork of
the daemon per run), and it never fires if the daemon dies before the child sets it. Instead,
one warden process per daemon (warden_process.py) watches a pipe only the daemon writes to: it
is told each command's session as the command starts and as it ends, and when the pipe reaches
end of file (the daemon is gone, however it died) it SIGKILLs those sessions.

Each command also inherits the *lifeline*, the read end of a pipe nobody writes to: it is in
the command's descriptor table from the moment the child exists, so the warden finds a command
the daemon died too early to announce, and a process of the command's that left its session,
by scanning /proc for it. A vfork'ed child holds the daemon's end of the pipe until it execs, so
the end of file cannot come while a command is still half-started.

The warden is started with the first command (it is one `python -I -S` process, ~10 MB); when it
dies, it is restarted at once and told the sessions still running (loudly: an error is logged).
Where there is no /proc (not Linux), one warning is logged when the handler is built and
commands run without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

from services.clock import SYSTEM_CLOCK, Clock
from services.log import get_logger
from services.process_wide import ProcessWide

log = get_logger(__name__)
WARDEN_PROGRAM = Path(__file__).with_name("warden_process.py")
RESTART_PAUSE_S = 1.0  # a warden that dies sooner than this after its start is not respawned faster
RETRY_S = 30.0  # after a failed start, the next try (at a command's start) waits this long


def unsupported_reason() -> str | None:
    """Why no warden can run on this machine, or None when one can."""
    if sys.platform != "linux":
        return f"the platform is {sys.platform}, not linux"
    if not os.path.isdir("/proc/self/fd"):
        return "/proc is not mounted"
    if not sys.executable:
        return "the Python interpreter's path is unknown (sys.executable is empty)"
    return None


class CommandWarden:
    def __init__(self, *, python: str | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._python = python or sys.executable
        self._clock = clock
        self._unsupported = unsupported_reason()
        self._warned = False
        self._lock = threading.Lock()
        self._sessions: set[int] = set()
        self._lifeline: int | None = None  # read end of a pipe without a write end, kept open
        self._control: int | None = None  # write end of the warden's stdin
        self._process: subprocess.Popen[bytes] | None = None
        self._next_try = 0.0
        self._failing = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The warden process's pid while one runs."""
        process = self._process
        return None if process is None else process.pid

    def check_supported(self) -> None:
        """Logs, once, that commands will not die with the daemon on this machine."""
        if self._unsupported is not None and not self._warned:
            self._warned = True
            log.warning(
                "command_warden.unavailable",
                reason=self._unsupported,
                consequence="command jobs keep running if the daemon is killed",
            )

    def lifeline(self) -> tuple[int, ...]:
        """The descriptors a command must inherit (its pass_fds); () where no warden can run."""
        with self._lock:
            self._ensure_started()
            # Also while a dead warden is being replaced: the next one looks for the same pipe.
            return () if self._lifeline is None else (self._lifeline,)

    def watch(self, sid: int) -> None:
        """A command started in session `sid` (its pid)."""
        with self._lock:
            self._sessions.add(sid)
            self._send(f"+{sid}\n")

    def forget(self, sid: int) -> None:
        """The command's session is over; call it before reaping the leader."""
        with self._lock:
            self._sessions.discard(sid)
            self._send(f"-{sid}\n")

    def close(self, timeout: float = 5.0) -> None:
        """Stops the warden; it kills what is still running of the commands, as at an exit."""
        with self._lock:
            self._closed = True
            process = self._process
            self._drop_process()
            if self._lifeline is not None:
                os.close(self._lifeline)
                self._lifeline = None
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("command_warden.slow_to_stop", pid=process.pid, waited_s=timeout)

    # -- under the lock -------------------------------------------------------------------------

    def _send(self, message: str) -> None:
        if self._control is None:
            return
        try:
            _write_all(self._control, message.encode())
        except OSError:
            pass  # the warden died: its keeper starts another and tells it self._sessions

    def _ensure_started(self) -> None:
        if self._process is not None or self._closed or self._unsupported is not None:
            return
        if self._clock.monotonic() < self._next_try:
            return
        if self._lifeline is None:
            read, write = os.pipe()
            os.close(write)
            self._lifeline = read
            _started.add(self)
        control_read, control_write = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    self._python,
                    "-I",
                    "-S",
                    str(WARDEN_PROGRAM),
                    f"pipe:[{os.fstat(self._lifeline).st_ino}]",
                    str(os.getpid()),
                    str(os.getsid(0)),
                ],
                stdin=control_read,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a kill of the daemon's process group spares it
            )
        except OSError as exc:
            os.close(control_write)
            self._next_try = self._clock.monotonic() + RETRY_S
            if not self._failing:
                self._failing = True
                log.error(
                    "command_warden.start_failed",
                    error=str(exc),
                    consequence="command jobs keep running if the daemon is killed",
                    retry_in_s=RETRY_S,
                )
            return
        finally:
            os.close(control_read)
        self._control, self._process = control_write, process
        self._failing = False
        self._send("".join(f"+{sid}\n" for sid in sorted(self._sessions)))
        started = self._clock.monotonic()
        threading.Thread(
            target=self._keep, args=(process, started), name="command-warden", daemon=True
        ).start()
        log.info("command_warden.started", pid=process.pid, sessions=len(self._sessions))

    def _drop_process(self) -> None:
        if self._control is not None:
            os.close(self._control)  # end of file for the warden, if it is still there
        self._control = self._process = None

    # -- the keeper thread ------------------------------------------------------------------------

    def _keep(self, process: subprocess.Popen[bytes], started: float) -> None:
        """Waits on the warden; if it dies while the daemon lives, starts another."""
        returncode = process.wait()
        with self._lock:
            if self._process is not process:
                return  # closed, or replaced already
            self._drop_process()
            self._next_try = max(self._next_try, started + RESTART_PAUSE_S)
            log.error(
                "command_warden.died_restarting",
                pid=process.pid,
                returncode=returncode,
                sessions=len(self._sessions),
            )
        self._clock.sleep(max(0.0, self._next_try - self._clock.monotonic()))
        with self._lock:
            self._ensure_started()

    def _forget_in_child(self) -> None:
        # A forked copy of the daemon (os.fork, multiprocessing) must neither keep the warden from
        # seeing the daemon's death nor pass for a command: it keeps neither descriptor.
        for fd in (self._control, self._lifeline):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._lock = threading.Lock()
        self._control = self._lifeline = self._process = None
        self._sessions = set()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_started: weakref.WeakSet[CommandWarden] = weakref.WeakSet()


def _forget_wardens_in_child() -> None:
    for warden in list(_started):
        warden._forget_in_child()


os.register_at_fork(after_in_child=_forget_wardens_in_child)

_shared: ProcessWide[CommandWarden] = ProcessWide(CommandWarden)


def shared_warden() -> CommandWarden:
    """The daemon's one warden (every CommandHandler of the process shares it)."""
    return _shared.get()
