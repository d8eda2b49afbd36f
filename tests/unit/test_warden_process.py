"""The command warden on fake inputs: its messages, its reading of /proc, its choice of targets."""

from __future__ import annotations

import os
from pathlib import Path

from services.engine.handlers.warden_process import Proc, apply, follow, read_procs, targets

LIFELINE = "pipe:[4242]"


def test_messages_announce_and_end_sessions() -> None:
    sessions: set[int] = set()
    for line in (b"+10", b"+11", b"-10", b"+x", b"", b"?12", b"-99"):
        apply(sessions, line)
    assert sessions == {11}


def test_follow_reads_until_end_of_file_across_split_writes() -> None:
    read, write = os.pipe()
    for chunk in (b"+1\n+2", b"0\n-1\n+3", b"\n+4"):  # "+4" never ends its line: ignored
        os.write(write, chunk)
    os.close(write)
    try:
        assert follow(read) == {20, 3}
    finally:
        os.close(read)


def fake_process(proc: Path, pid: int, state: str, sid: int, fds: dict[str, str]) -> None:
    folder = proc / str(pid)
    (folder / "fd").mkdir(parents=True)
    # comm may contain spaces and parentheses: fields are read after the last ')'.
    (folder / "stat").write_text(f"{pid} (odd) name) {state} 1 {sid} {sid} 0 -1 4194560\n")
    for fd, target in fds.items():
        os.symlink(target, folder / "fd" / fd)


def test_read_procs_gives_sessions_and_lifeline_holders_and_skips_zombies(tmp_path: Path) -> None:
    fake_process(tmp_path, 100, "S", 100, {"0": "/dev/null", "7": LIFELINE})
    fake_process(tmp_path, 101, "R", 100, {"0": "pipe:[1]"})
    fake_process(tmp_path, 102, "Z", 100, {"7": LIFELINE})
    (tmp_path / "self").mkdir()
    (tmp_path / "103").mkdir()  # vanished between listing and reading
    assert sorted(read_procs(LIFELINE, tmp_path)) == [
        Proc(100, 100, True),
        Proc(101, 100, False),
    ]


def test_targets_are_announced_sessions_and_holders_with_their_sessions() -> None:
    procs = [
        Proc(10, 10, False),  # an announced session's leader ...
        Proc(11, 10, False),  # ... and a member that left the leader's group
        Proc(20, 20, True),  # a command not announced yet: found by its lifeline
        Proc(21, 20, False),
        Proc(30, 30, True),  # a command's child that started its own session, lifeline kept
        Proc(40, 40, False),  # unrelated
        Proc(50, 5, True),  # a holder in the daemon's own session: only it, not its session
        Proc(51, 5, False),
        Proc(5, 5, True),  # the daemon: it holds the lifeline too, to hand it on
    ]
    pids, sids = targets(procs, {10}, protected_pids={5, 1}, protected_sids={5, 0, 1})
    assert sids == {10, 20, 30}
    assert pids == {10, 11, 20, 21, 30, 50}


def test_protected_pids_are_never_targets_even_in_an_announced_session() -> None:
    pids, _ = targets([Proc(7, 7, True)], {7}, protected_pids={7}, protected_sids=set())
    assert pids == set()
