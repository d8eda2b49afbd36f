"""The command warden: a small process that kills what command jobs left once the daemon is gone.

`CommandWarden` (warden.py) runs it as
`python -I -S warden_process.py LIFELINE DAEMON_PID DAEMON_SID`, in its own session, with its
stdin the read end of a pipe that only the daemon writes to. It uses the standard library only:
it runs isolated, without the project on `sys.path`.

On stdin, one line per message: `+SID` a command started (its session id, which is its pid), and
`-SID` it ended (sent before the daemon reaps it, while the id still names only that session).
End of file means that no copy of the write end is left: the daemon exited or was killed (the
kernel closes a dead process's descriptors, SIGKILL included). Nobody else will clean up, so the
warden SIGKILLs
- every process in a session it was told about, and
- every process that holds LIFELINE (`pipe:[inode]`, a descriptor that each command inherits from
  the moment it is created, before the daemon could announce it), and everything in its session.
It never kills the daemon's session, pid 1 or itself, and repeats the pass until it finds no
process it has not signalled yet (one may have forked meanwhile).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

PROC = Path("/proc")
MAX_PASSES = 20
PASS_PAUSE_S = 0.02


class Proc(NamedTuple):
    pid: int
    sid: int
    holds_lifeline: bool


def apply(sessions: set[int], line: bytes) -> None:
    """One message from the daemon; anything malformed is ignored."""
    try:
        sid = int(line[1:])
    except ValueError:
        return
    if line.startswith(b"+"):
        sessions.add(sid)
    elif line.startswith(b"-"):
        sessions.discard(sid)


def follow(fd: int) -> set[int]:
    """Reads messages until end of file; returns the sessions still announced then."""
    sessions: set[int] = set()
    pending = b""
    while chunk := os.read(fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            apply(sessions, line)
    return sessions


def _holds(fd_dir: Path, lifeline: str) -> bool:
    try:
        names = os.listdir(fd_dir)
    except OSError:  # gone, or not ours to look at
        return False
    for name in names:
        try:
            if os.readlink(fd_dir / name) == lifeline:
                return True
        except OSError:
            continue
    return False


def read_procs(lifeline: str, proc: Path = PROC) -> list[Proc]:
    """The live (not zombie) processes, with their session and whether they hold LIFELINE."""
    found: list[Proc] = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            stat = (proc / name / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        found.append(Proc(int(name), int(fields[3]), _holds(proc / name / "fd", lifeline)))
    return found


def targets(
    procs: Iterable[Proc],
    sessions: set[int],
    protected_pids: set[int],
    protected_sids: set[int],
) -> tuple[set[int], set[int]]:
    """(the pids to kill, the sessions to kill): the announced sessions, the lifeline holders'
    sessions and the holders themselves, never a protected pid or session."""
    procs = list(procs)
    sids = (sessions | {p.sid for p in procs if p.holds_lifeline}) - protected_sids
    pids = {p.pid for p in procs if p.sid in sids or p.holds_lifeline} - protected_pids
    return pids, sids


def _kill(kill: Callable[[int, int], None], target: int) -> None:
    try:
        kill(target, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all(
    sessions: set[int],
    lifeline: str,
    protected_pids: set[int],
    protected_sids: set[int],
    *,
    proc: Path = PROC,
    passes: int = MAX_PASSES,
    pause: float = PASS_PAUSE_S,
) -> set[int]:
    """SIGKILLs the targets, pass after pass, until a pass finds nobody new; returns the pids."""
    killed: set[int] = set()
    for _ in range(passes):
        pids, sids = targets(read_procs(lifeline, proc), sessions, protected_pids, protected_sids)
        for sid in sids:  # a session leader's group id is its session id: one call for most
            _kill(os.killpg, sid)
        fresh = pids - killed
        if not fresh:
            break
        for pid in fresh:
            _kill(os.kill, pid)
        killed |= fresh
        time.sleep(pause)
    return killed


def main(argv: list[str]) -> int:
    lifeline, daemon_pid, daemon_sid = argv[1], int(argv[2]), int(argv[3])
    sessions = follow(sys.stdin.fileno())
    me = os.getpid()
    killed = kill_all(sessions, lifeline, {me, daemon_pid, 1}, {os.getsid(0), daemon_sid, 0, 1})
    if killed:
        print(
            f"command-warden: daemon {daemon_pid} is gone; killed {len(killed)} process(es) "
            f"its command jobs left: {sorted(killed)}",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
