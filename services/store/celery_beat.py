"""Reads django-celery-beat's tables from another database (given by its DSN), never writing.

Only the tables the import needs: PeriodicTask with its crontab, interval and solar schedules,
and the clocked schedules where the table exists (django-celery-beat 2.0 added it).
"""

from __future__ import annotations

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import SchedulerError
from services.model.celery_beat import BeatTask

_SQL = load_queries("celery_beat")
_REQUIRED = (
    "django_celery_beat_periodictask",
    "django_celery_beat_crontabschedule",
    "django_celery_beat_intervalschedule",
    "django_celery_beat_solarschedule",
)
_CLOCKED = "django_celery_beat_clockedschedule"
_WITH_CLOCKED = {
    "clocked_time": "k.clocked_time",
    "clocked_join": f"LEFT JOIN {_CLOCKED} k ON k.id = t.clocked_id",
}
_WITHOUT_CLOCKED = {"clocked_time": "NULL::timestamptz", "clocked_join": ""}


class BeatSchemaMissing(SchedulerError):
    """The database has no (or not all of) django-celery-beat's tables."""


def read_beat_tasks(dsn: str) -> list[BeatTask]:
    """Every PeriodicTask of the database at `dsn`, ordered by name."""
    db = DatabaseConnection(dsn, min_size=0, max_size=1, pool_timeout=10.0)
    try:
        tables = {
            row["table_name"]
            for row in db.fetch_all(_SQL["beat_tables"], {"prefix": "django_celery_beat_%"})
        }
        missing = [name for name in _REQUIRED if name not in tables]
        if missing:
            raise BeatSchemaMissing(
                f"not a django-celery-beat database: missing table(s) {', '.join(missing)}"
            )
        fragments = _WITH_CLOCKED if _CLOCKED in tables else _WITHOUT_CLOCKED
        rows = db.fetch_all(_SQL["periodic_tasks"].format(**fragments))
    finally:
        db.close()
    return [BeatTask.from_row(row) for row in rows]
