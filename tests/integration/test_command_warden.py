"""The command warden with real processes: the races it covers, its restart, where it cannot run."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from services.engine.handlers import CommandHandler
from services.engine.handlers import warden as warden_module
from services.engine.handlers.warden import CommandWarden
from services.model.vocabulary import ExecutionStatus
from tests.integration.test_handler_command import (
    alive,
    assert_all_gone,
    kill_daemon,
    read_pids,
    start_daemon,
    wait_until,
)
from tests.support.handler_funcs import make_context


def test_a_command_the_daemon_died_too_early_to_announce_dies_too(tmp_path: Path) -> None:
    # Killed between the spawn and the announcement: the lifeline the command holds since its
    # creation is what the warden finds it by.
    daemon = start_daemon("unannounced", tmp_path)
    try:
        pids = read_pids(tmp_path / "pids", 1, timeout=20)
        read_pids(tmp_path / "warden", 1)
        wait_until(lambda: alive(pids[0]), 5, "the command")
    finally:
        kill_daemon(daemon)
    assert_all_gone(pids)


def test_a_command_that_closed_the_lifeline_dies_by_its_announced_session(tmp_path: Path) -> None:
    daemon = start_daemon("closed", tmp_path)
    try:
        pids = read_pids(tmp_path / "pids", 2, timeout=20)
        read_pids(tmp_path / "warden", 1)
    finally:
        kill_daemon(daemon)
    assert_all_gone(pids)


def test_a_killed_warden_is_replaced_and_told_the_running_sessions(tmp_path: Path) -> None:
    daemon = start_daemon("restart", tmp_path)
    try:
        pids = read_pids(tmp_path / "pids", 2, timeout=20)
        first, second = read_pids(tmp_path / "warden", 2, timeout=10)
        assert first != second
        assert all(alive(pid) for pid in pids)  # the warden's death kills nothing
    finally:
        kill_daemon(daemon)
    assert_all_gone(pids)  # the closed lifeline: only the replayed session finds them
    assert "command_warden.died_restarting" in (tmp_path / "output").read_text()


def test_closing_the_warden_kills_what_still_runs(tmp_path: Path) -> None:
    warden = CommandWarden()
    handler = CommandHandler(allowlist=["sh"], warden=warden)
    pids = tmp_path / "pids"
    ctx = make_context(
        {"argv": ["sh", "-c", f"sleep 30 & echo $! > {pids}; wait"]}, job_type="command"
    )
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(handler.run(ctx)))
    worker.start()
    (sleeper,) = read_pids(pids, 1)
    warden.close()
    worker.join(5)
    assert outcomes[0].status is ExecutionStatus.FAILED  # its leader was killed
    assert_all_gone([sleeper])
    assert warden.lifeline() == ()  # closed for good


def test_where_no_warden_can_run_one_warning_and_commands_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(warden_module, "unsupported_reason", lambda: "the platform is plan9")
    warden = CommandWarden()
    with capture_logs() as logs:
        handlers = [CommandHandler(allowlist=["true"], warden=warden) for _ in range(2)]
        outcomes = [h.run(make_context({"argv": ["true"]}, job_type="command")) for h in handlers]
    assert [o.status for o in outcomes] == [ExecutionStatus.COMPLETED] * 2
    warnings = [entry for entry in logs if entry["event"] == "command_warden.unavailable"]
    assert len(warnings) == 1
    assert warnings[0]["reason"] == "the platform is plan9"
    assert warden.pid is None


def test_a_warden_that_cannot_start_is_reported_once(tmp_path: Path) -> None:
    warden = CommandWarden(python=str(tmp_path / "no-such-python"))
    handler = CommandHandler(allowlist=["true"], warden=warden)
    with capture_logs() as logs:
        outcomes = [handler.run(make_context({"argv": ["true"]}, job_type="command")) for _ in "ab"]
    assert [o.status for o in outcomes] == [ExecutionStatus.COMPLETED] * 2
    errors = [entry for entry in logs if entry["event"] == "command_warden.start_failed"]
    assert len(errors) == 1
    assert "no-such-python" in errors[0]["error"]
    warden.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded test process
def test_a_forked_copy_of_the_daemon_keeps_neither_descriptor() -> None:
    warden = CommandWarden()
    (lifeline,) = warden.lifeline()
    control = warden._control
    assert control is not None
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        kept = [fd for fd in (lifeline, control) if _is_open(fd)]
        os._exit(1 if kept or warden.pid is not None else 0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    warden.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_the_warden_runs_isolated_from_the_project() -> None:
    warden = CommandWarden()
    warden.lifeline()
    assert warden.pid is not None
    cmdline = Path(f"/proc/{warden.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:3] == [os.fsencode(sys.executable), b"-I", b"-S"]
    assert os.getsid(warden.pid) == warden.pid  # its own session: a group kill spares it
    warden.close()
