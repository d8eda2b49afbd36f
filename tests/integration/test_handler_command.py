"""The command handler with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from services.engine.handlers import CommandHandler, JobOutcome
from services.model.vocabulary import ExecutionStatus
from tests.support.handler_funcs import make_context

ROOT = Path(__file__).resolve().parents[2]


def run(argv: object, allowlist: list[str], **kw: Any) -> JobOutcome:
    handler = CommandHandler(allowlist=allowlist, kill_grace=kw.pop("kill_grace", 2.0))
    payload = {"argv": argv, **kw.pop("payload", {})}
    return handler.run(make_context(payload, job_type="command", **kw))


def alive(pid: int) -> bool:
    """A zombie counts as gone: it runs nothing, and PID 1 here may be slow to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read_pids(path: Path, count: int, timeout: float = 5.0) -> list[int]:
    def complete() -> bool:
        return path.exists() and len(path.read_text().split()) >= count

    wait_until(complete, timeout, f"{count} pid(s) in {path}")
    return [int(pid) for pid in path.read_text().split()]


def assert_all_gone(pids: list[int]) -> None:
    wait_until(lambda: not any(alive(pid) for pid in pids), 3.0, f"processes {pids} to end")


def test_allowlisted_echo_completes_with_its_output() -> None:
    started = time.monotonic()
    outcome = run(["echo", "hello", "world"], ["echo", "sleep"])
    assert time.monotonic() - started < 1.0
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert outcome.metadata is not None
    assert outcome.metadata["stdout_tail"] == "hello world\n"
    assert outcome.metadata["returncode"] == 0
    assert outcome.error_details is None


def test_exit_75_is_retryable() -> None:
    outcome = run(["sh", "-c", "exit 75"], ["sh"])
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is True
    assert outcome.error_details is not None
    assert outcome.error_details["exit_code"] == 75


def test_other_exit_fails_with_code_and_last_stderr_line() -> None:
    outcome = run(["sh", "-c", "echo first >&2; echo 'last line' >&2; echo out; exit 3"], ["sh"])
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_message == "command 'sh' exited with code 3: last line"
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "exit_code"
    assert outcome.error_details["stderr_tail"] == "first\nlast line\n"
    assert outcome.metadata is not None
    assert outcome.metadata["stdout_tail"] == "out\n"


def test_killed_by_signal_fails() -> None:
    outcome = run(["sh", "-c", "kill -KILL $$"], ["sh"])
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error_details is not None
    assert outcome.error_details["signal"] == "SIGKILL"


@pytest.mark.parametrize(
    ("program", "allowlist"),
    [
        ("sh", ["echo", "sleep"]),
        ("../../bin/sh", ["sh"]),
        ("/bin/sh", ["sh"]),
        ("sh", ["/bin/sh"]),
        ("/usr/bin/sh", ["/bin/sh"]),
        ("SH", ["sh"]),
    ],
)
def test_programs_outside_the_allowlist_are_refused_and_never_started(
    tmp_path: Path, program: str, allowlist: list[str]
) -> None:
    marker = tmp_path / "started"
    outcome = run([program, "-c", f"touch {marker}"], allowlist)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    allowed = ", ".join(allowlist)
    assert outcome.error_message == (
        f"command {program!r} is not in COMMAND_ALLOWLIST (allowed: {allowed})"
    )
    assert outcome.error_details == {
        "type": "command_not_allowed",
        "retryable": False,
        "program": program,
    }
    assert not marker.exists()


def test_absolute_path_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    outcome = run(["/usr/bin/touch", str(marker)], ["echo", "touch"])
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "command_not_allowed"
    assert not marker.exists()


def test_listed_path_runs_that_path(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    outcome = run(["/bin/sh", "-c", f"touch {marker}"], ["/bin/sh"])
    assert outcome.status is ExecutionStatus.COMPLETED
    assert marker.exists()


@pytest.mark.parametrize("argv", [None, "echo hi", [], [1], [""], ["echo", None]])
def test_bad_argv_fails_with_a_reason(argv: object) -> None:
    outcome = run(argv, ["echo"])
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "invalid_argv"
    assert "payload.argv" in (outcome.error_message or "")


def test_allowlisted_name_missing_from_path() -> None:
    outcome = run(["no-such-program-7f3e"], ["no-such-program-7f3e"])
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "command_not_found"


def test_environment_carries_the_run() -> None:
    names = ["SCHEDULE_ID", "EXECUTION_ID", "SCHEDULED_FOR", "DOMAIN", "PAYLOAD", "PATH"]
    ctx = make_context({"argv": ["printenv", *names], "depth": 2}, job_type="command")
    outcome = CommandHandler(allowlist=["printenv"]).run(ctx)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert outcome.metadata is not None
    values = outcome.metadata["stdout_tail"].splitlines()
    assert values[:4] == [
        str(ctx.schedule_id),
        str(ctx.execution_id),
        "2026-12-01T10:00:00Z",
        "example.com",
    ]
    assert json.loads(values[4]) == {"argv": ["printenv", *names], "depth": 2}
    assert values[5] == os.environ["PATH"]  # the daemon's own environment is passed on


def test_a_megabyte_of_output_does_not_block() -> None:
    script = (
        "import sys; sys.stdout.write('o' * 1048576 + 'END-OUT'); "
        "sys.stderr.write('e' * 1048576 + 'END-ERR')"
    )
    outcome = run([sys.executable, "-c", script], [sys.executable], timeout=20)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert outcome.metadata is not None
    assert len(outcome.metadata["stdout_tail"]) == 4096
    assert outcome.metadata["stdout_tail"].endswith("oEND-OUT")
    assert outcome.metadata["stderr_tail"].endswith("eEND-ERR")
    assert outcome.metadata["stdout_bytes"] == 1048576 + 7


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; wait"
    started = time.monotonic()
    outcome = run(["/bin/sh", "-c", script], ["/bin/sh"], timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert outcome.status is ExecutionStatus.TIMED_OUT
    assert outcome.retryable is True
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "timeout"
    assert_all_gone(read_pids(pids, 2))


def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"trap '' TERM; sleep 30 & echo $! > {pids}; echo $$ >> {pids}; wait"
    outcome = run(["sh", "-c", script], ["sh"], timeout=0.3, kill_grace=0.3)
    assert outcome.status is ExecutionStatus.TIMED_OUT
    assert_all_gone(read_pids(pids, 2))


def test_cancel_stops_the_command_quickly(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cancel = threading.Event()
    outcomes: list[JobOutcome] = []
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; wait"

    def target() -> None:
        outcomes.append(run(["sh", "-c", script], ["sh"], cancel_event=cancel, timeout=60))

    worker = threading.Thread(target=target)
    worker.start()
    group = read_pids(pids, 2)
    cancelled_at = time.monotonic()
    cancel.set()
    worker.join(5)
    assert time.monotonic() - cancelled_at < 1.0
    assert outcomes[0].status is ExecutionStatus.CANCELLED
    assert outcomes[0].retryable is False
    assert_all_gone(group)


def test_leftover_background_processes_die_with_the_run(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    outcome = run(["sh", "-c", f"sleep 30 & echo $! > {pids}"], ["sh"])
    assert outcome.status is ExecutionStatus.COMPLETED
    assert time.monotonic() - started < 2.0  # not stuck on the pipe the leftover holds
    assert_all_gone(read_pids(pids, 1))


HELPER = """
import sys
from services.engine.handlers import CommandHandler
from tests.support.handler_funcs import make_context
pidfile = sys.argv[1]
ctx = make_context({"argv": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]}, timeout=60)
CommandHandler(allowlist=["sh"]).run(ctx)
"""


def test_command_dies_with_its_daemon(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    daemon = subprocess.Popen(
        [sys.executable, "-c", HELPER, str(pids)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (command_pid,) = read_pids(pids, 1, timeout=20)
        wait_until(lambda: "sleep" in Path(f"/proc/{command_pid}/cmdline").read_text(), 5, "exec")
        assert alive(command_pid)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    assert_all_gone([command_pid])


def start_daemon(mode: str, folder: Path) -> subprocess.Popen[bytes]:
    """tests/support/command_daemon.py in MODE, writing into `folder` (its output in `output`)."""
    with (folder / "output").open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.command_daemon", mode, str(folder)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def kill_daemon(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()


def test_the_whole_session_dies_with_its_daemon(tmp_path: Path) -> None:
    # The leader, a child in its group, one in a group of its own (same session) and one that
    # started a session of its own but kept the lifeline: all gone once the daemon is killed.
    daemon = start_daemon("session", tmp_path)
    try:
        pids = read_pids(tmp_path / "pids", 4, timeout=20)
        wait_until(lambda: all(alive(pid) for pid in pids), 5, "the command's processes")
    finally:
        kill_daemon(daemon)
    assert_all_gone(pids)
    (warden,) = read_pids(tmp_path / "warden", 1)
    assert_all_gone([warden])  # its work done, the warden exits too
    assert "command-warden: daemon" in (tmp_path / "output").read_text()


def test_a_run_never_forks_the_daemon() -> None:
    # A preexec_fn makes CPython fork() the whole daemon and run Python in the child; the fork
    # hooks run then. Without one it spawns with vfork() and they never run.
    forks: list[int] = []
    os.register_at_fork(before=lambda: forks.append(1))
    outcome = run(["sh", "-c", "sleep 0 & exit 0"], ["sh"])
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert forks == []
