"""The pause's pure parts: the record, note rules, the switch the runner asks, the CLI's targets."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from services.cli.pause import _target_error, describe_pause
from services.engine.pause import PauseSwitch
from services.errors import DatabaseUnavailable, InvalidPauseRequest, StartupError
from services.model.records import NOT_PAUSED, SchedulerPause
from services.store.scheduler_state import pause_author, pause_note

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
PAUSED = SchedulerPause(True, "database upgrade", "cli:alice", AT)


class FakeState:
    """A `read` for the switch: returns `state`, or raises `error` while it is set."""

    def __init__(self, state: SchedulerPause = NOT_PAUSED) -> None:
        self.state = state
        self.error: Exception | None = None
        self.reads = 0

    def __call__(self) -> SchedulerPause:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.state


def test_the_record_from_its_row_and_as_a_dict() -> None:
    row = {"paused": True, "paused_note": "n", "paused_by": "cli:a", "paused_at": AT}
    pause = SchedulerPause.from_row(row)
    assert pause == SchedulerPause(True, "n", "cli:a", AT)
    assert pause.to_dict() == {"paused": True, "note": "n", "paused_by": "cli:a", "paused_at": AT}
    assert pause.skip_reason == "scheduler paused: n"
    assert NOT_PAUSED.to_dict() == {
        "paused": False,
        "note": None,
        "paused_by": None,
        "paused_at": None,
    }


def test_notes_are_trimmed_and_a_blank_note_is_no_note() -> None:
    assert pause_note("  deploy  ", required=True) == "deploy"
    assert pause_note(None, required=False) is None
    assert pause_note("   ", required=False) is None
    for blank in (None, "", " \n "):
        with pytest.raises(InvalidPauseRequest, match="needs a note"):
            pause_note(blank, required=True)
    with pytest.raises(InvalidPauseRequest, match="must be text"):
        pause_note(42, required=False)  # type: ignore[arg-type]


def test_a_pause_names_who_made_it() -> None:
    assert pause_author(" cli:alice ") == "cli:alice"
    for nobody in ("", "  "):
        with pytest.raises(InvalidPauseRequest, match="who made it"):
            pause_author(nobody)


def test_the_switch_loads_then_follows_the_state_and_gives_the_skip_reason() -> None:
    read = FakeState(PAUSED)
    switch = PauseSwitch(read)
    assert switch.load() == PAUSED
    assert switch.skip_reason() == "scheduler paused: database upgrade"
    read.state = NOT_PAUSED
    with capture_logs() as logs:
        switch.refresh()
    assert switch.skip_reason() is None and switch.current == NOT_PAUSED
    assert [e["event"] for e in logs] == ["scheduler.resumed"]


def test_a_new_note_is_logged_and_taken_at_once() -> None:
    read = FakeState(PAUSED)
    switch = PauseSwitch(read)
    switch.load()
    read.state = SchedulerPause(True, "longer than planned", "cli:bob", AT)
    with capture_logs() as logs:
        switch.refresh()
        switch.refresh()  # unchanged: no second line
    assert switch.skip_reason() == "scheduler paused: longer than planned"
    assert [(e["event"], e["note"]) for e in logs] == [("scheduler.paused", "longer than planned")]


def test_postgresql_down_keeps_the_last_known_state_and_says_so_once() -> None:
    read = FakeState(PAUSED)
    switch = PauseSwitch(read)
    switch.load()
    read.error = DatabaseUnavailable("cannot connect to PostgreSQL")
    with capture_logs() as logs:
        for _ in range(5):
            switch.refresh()
    assert switch.skip_reason() == "scheduler paused: database upgrade"
    assert [(e["event"], e["keeping"]) for e in logs] == [("pause.state_unreadable", "paused")]
    read.error = None
    read.state = NOT_PAUSED
    with capture_logs() as logs:
        switch.refresh()
    assert [e["event"] for e in logs] == ["pause.state_readable", "scheduler.resumed"]
    assert switch.skip_reason() is None


def test_start_up_refuses_to_fire_without_knowing_whether_it_is_paused() -> None:
    read = FakeState()
    read.error = DatabaseUnavailable("cannot connect to PostgreSQL")
    with pytest.raises(StartupError, match="cannot read the scheduler's pause state"):
        PauseSwitch(read).load()


def test_a_switch_never_loaded_reads_once_when_first_asked() -> None:
    read = FakeState(PAUSED)
    switch = PauseSwitch(read)  # as in `trigger --local`: the daemon was built, not started
    assert switch.current == NOT_PAUSED and read.reads == 0  # `status` never blocks on a read
    assert switch.skip_reason() == "scheduler paused: database upgrade"
    assert switch.skip_reason() is not None
    assert read.reads == 1


def test_a_switch_never_loaded_that_cannot_read_counts_as_not_paused() -> None:
    read = FakeState()
    read.error = DatabaseUnavailable("down")
    switch = PauseSwitch(read)
    assert switch.skip_reason() is None
    assert switch.skip_reason() is None
    assert read.reads == 1  # asked once; the side loop (when running) asks again


def _args(command: str, schedule_id: object = None, *, all_: bool = False) -> argparse.Namespace:
    return argparse.Namespace(command=command, schedule_id=schedule_id, all=all_)


def test_the_cli_needs_exactly_one_target() -> None:
    assert _target_error(_args("pause", uuid4())) is None
    assert _target_error(_args("resume", all_=True)) is None
    assert "a schedule id, or --all" in str(_target_error(_args("pause")))
    assert "not both" in str(_target_error(_args("resume", uuid4(), all_=True)))


def test_status_line_of_the_pause() -> None:
    assert describe_pause(NOT_PAUSED) == "scheduler running (not paused)"
    assert describe_pause(PAUSED) == (
        "scheduler paused since 2026-12-01T10:00:00+00:00 by cli:alice: database upgrade"
    )
