"""The `scheduler_state` table's store: the global pause, one row (migration 006).

A trigger on the row sends `pg_notify('scheduler_state', 'paused'|'resumed')` on every write, so
instances learn at once; each also reads the row twice a second (`engine/pause.py`).
"""

from __future__ import annotations

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import InvalidPauseRequest
from services.model.records import NOT_PAUSED, SchedulerPause

__all__ = ["CHANNEL", "SchedulerStateStore", "pause_author", "pause_note"]

_SQL = load_queries("scheduler_state")
CHANNEL = "scheduler_state"


def pause_note(note: str | None, *, required: bool) -> str | None:
    """A pause's note without its surrounding blanks; a blank note is no note, which
    InvalidPauseRequest refuses when one is `required`."""
    if note is not None and not isinstance(note, str):
        raise InvalidPauseRequest(f"a pause note must be text, got {type(note).__name__}")
    cleaned = (note or "").strip() or None
    if cleaned is None and required:
        raise InvalidPauseRequest("pausing the scheduler needs a note saying why")
    return cleaned


def pause_author(by: str) -> str:
    """Who paused (`cli:<OS user>`, `api:<token name>`): required, never blank."""
    if not isinstance(by, str) or not by.strip():
        raise InvalidPauseRequest(f"a pause must name who made it, got {by!r}")
    return by.strip()


class SchedulerStateStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def get(self) -> SchedulerPause:
        row = self.db.fetch_one(_SQL["get_scheduler_state"])
        return NOT_PAUSED if row is None else SchedulerPause.from_row(row)

    def pause(self, note: str, by: str) -> SchedulerPause:
        """Pause every instance. Already paused: the note (and `paused_by`) are replaced, and
        `paused_at` stays when the pause began. InvalidPauseRequest without a note."""
        params = {"note": pause_note(note, required=True), "by": pause_author(by)}
        row = self.db.fetch_one(_SQL["pause_scheduler"], params)
        assert row is not None  # an upsert always returns its row
        return SchedulerPause.from_row(row)

    def resume(self) -> SchedulerPause:
        """End the pause (a no-op when not paused); the next occurrences run normally."""
        row = self.db.fetch_one(_SQL["resume_scheduler"])
        assert row is not None
        return SchedulerPause.from_row(row)
