"""The management API's reads of job_executions against real PostgreSQL: keyset pages with
filters, statistics with percentiles, and one run read back with the output its handler stored.

Expected orders and figures are computed here in Python from the rows the test wrote, never
with the store's own SQL.
"""

from __future__ import annotations

import itertools
import random
import statistics
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from services.engine.handlers import CommandHandler
from services.errors import InvalidCursor, SchedulerError
from services.model.occurrence import FinalResult, OccurrenceKey
from services.model.records import Execution
from services.model.run_output import output_tail
from services.store.executions import ExecutionStore
from services.store.history import JobHistory
from services.store.paging import encode_cursor
from tests.support.handler_funcs import make_context

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATUSES = ("completed", "failed", "skipped", "timed_out", "running", "cancelled", "abandoned")
TRIGGERS = ("schedule", "retry", "manual", "catchup")
INSTANCES = ("alpha", "beta", "gamma")

INSERT_SCHEDULE = """
INSERT INTO schedules (domain_config_id, domain, frequency, time_config)
VALUES (gen_random_uuid(), 'example.com', 'daily', '{"hour": 2}')
RETURNING schedule_id
"""

# Many rows in one statement; `ago` (seconds before now()) stands in for started_at when given.
INSERT_ROWS = """
INSERT INTO job_executions (execution_id, schedule_id, job_id, domain, domain_config_id, status,
                            started_at, completed_at, duration_seconds, scheduled_for, trigger,
                            instance_id)
SELECT r.execution_id, r.schedule_id, 'job', 'example.com', gen_random_uuid(), r.status,
       coalesce(r.started_at, now() - make_interval(secs => r.ago)),
       CASE WHEN r.status = 'running' THEN NULL
            ELSE coalesce(r.started_at, now() - make_interval(secs => r.ago)) END,
       r.duration, r.scheduled_for, r.trigger, r.instance_id
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    execution_id uuid, schedule_id uuid, status text, started_at timestamptz, ago float8,
    duration float8, scheduled_for timestamptz, trigger text, instance_id text)
"""

_serial = itertools.count()


@dataclass(frozen=True)
class Row:
    execution_id: UUID
    schedule_id: UUID | None
    status: str
    started_at: datetime
    trigger: str
    instance_id: str

    @property
    def key(self) -> tuple[datetime, UUID]:
        return (self.started_at, self.execution_id)


def insert(db: DatabaseConnection, rows: list[dict[str, Any]]) -> None:
    """Rows given as dicts of INSERT_ROWS' columns; the unique occurrence key is filled in."""
    payload = []
    for row in rows:
        scheduled_for = BASE + timedelta(microseconds=next(_serial))
        payload.append(
            {
                "trigger": "schedule",
                "instance_id": "alpha",
                **row,
                "execution_id": str(row["execution_id"]),
                "schedule_id": None if row.get("schedule_id") is None else str(row["schedule_id"]),
                "started_at": row["started_at"].isoformat() if row.get("started_at") else None,
                "scheduled_for": scheduled_for.isoformat(),
            }
        )
    db.execute(INSERT_ROWS, {"rows": Jsonb(payload)})


def add_rows(
    db: DatabaseConnection, count: int, schedules: list[UUID | None], *, newest: datetime
) -> list[Row]:
    """`count` rows below `newest`, in runs of up to 7 that share one started_at (a batch that
    one claim statement started), with statuses, triggers, instances and schedules mixed."""
    rng = random.Random(count)
    rows, moment = [], newest
    while len(rows) < count:
        moment -= timedelta(seconds=rng.choice((1, 1, 2, 60)), microseconds=rng.randrange(10**6))
        for _ in range(min(rng.randint(1, 7), count - len(rows))):
            rows.append(
                Row(
                    uuid.uuid4(),
                    rng.choice(schedules),
                    rng.choice(STATUSES),
                    moment,
                    rng.choice(TRIGGERS),
                    rng.choice(INSTANCES),
                )
            )
    insert(
        db,
        [
            {
                "execution_id": r.execution_id,
                "schedule_id": r.schedule_id,
                "status": r.status,
                "started_at": r.started_at,
                "trigger": r.trigger,
                "instance_id": r.instance_id,
                "duration": 1.0,
            }
            for r in rows
        ],
    )
    return rows


def newest_first(rows: list[Row]) -> list[UUID]:
    return [r.execution_id for r in sorted(rows, key=lambda r: r.key, reverse=True)]


def all_pages(history: JobHistory, limit: int, **filters: Any) -> list[list[Execution]]:
    pages, cursor = [], None
    while True:
        items, cursor = history.page_executions(limit=limit, cursor=cursor, **filters)
        pages.append(items)
        if cursor is None:
            return pages
        assert len(pages) < 1000, "paging does not end"


def ids(executions: list[Execution]) -> list[UUID]:
    return [e.execution_id for e in executions]


@pytest.fixture
def history(db: DatabaseConnection) -> JobHistory:
    return JobHistory(db)


@pytest.fixture
def schedules(db: DatabaseConnection) -> list[UUID | None]:
    return [db.fetch_value(INSERT_SCHEDULE) for _ in range(3)] + [None]


@pytest.fixture
def rows(db: DatabaseConnection, schedules: list[UUID | None]) -> list[Row]:
    return add_rows(db, 300, schedules, newest=BASE)


def test_pages_return_every_row_once_newest_first(history: JobHistory, rows: list[Row]) -> None:
    assert len({r.started_at for r in rows}) < len(rows) / 2  # many rows share a started_at
    expected = newest_first(rows)
    for limit in (1, 7, 50, 299, 300, 500):
        pages = all_pages(history, limit)
        assert [len(p) for p in pages[:-1]] == [limit] * (len(pages) - 1)
        assert 1 <= len(pages[-1]) <= limit
        assert [e for page in pages for e in ids(page)] == expected, limit
    # A page that ends exactly on the last row says there is no next page.
    items, cursor = history.page_executions(limit=300)
    assert len(items) == 300 and cursor is None


def test_rows_inserted_or_deleted_between_pages_never_shift_a_later_page(
    db: DatabaseConnection, history: JobHistory, rows: list[Row], schedules: list[UUID | None]
) -> None:
    expected = newest_first(rows)
    by_id = {r.execution_id: r for r in rows}
    seen: list[UUID] = []
    inserted: set[UUID] = set()
    deleted_unseen: set[UUID] = set()
    items, cursor = history.page_executions(limit=40)
    seen += ids(items)
    for day in itertools.count(1):
        if cursor is None:
            break
        # Newer runs arrive; one even shares the cursor row's started_at, with a larger id,
        # so it sorts before the cursor too ...
        newer = add_rows(db, 15, schedules, newest=BASE + timedelta(days=day))
        twin = UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")
        insert(
            db,
            [{"execution_id": twin, "status": "running", "started_at": by_id[seen[-1]].started_at}],
        )
        inserted |= {r.execution_id for r in newer} | {twin}
        # ... and rows go: the cursor's own row, and one the next page would have held.
        unseen = [e for e in expected if e not in set(seen) | deleted_unseen]
        ahead = unseen[5:6]
        db.execute("DELETE FROM job_executions WHERE execution_id = ANY(%s)", ([seen[-1], *ahead],))
        deleted_unseen.update(ahead)
        items, cursor = history.page_executions(limit=40, cursor=cursor)
        seen += ids(items)
        db.execute("DELETE FROM job_executions WHERE execution_id = %s", (twin,))
    assert not inserted & set(seen)
    assert deleted_unseen and not deleted_unseen & set(seen)
    assert seen == [e for e in expected if e not in deleted_unseen]


def test_each_filter_alone_and_combined(
    history: JobHistory, rows: list[Row], schedules: list[UUID | None]
) -> None:
    def expect(keep: Any, limit: int = 9, **filters: Any) -> None:
        wanted = newest_first([r for r in rows if keep(r)])
        assert wanted, filters  # the mix gives every filter something to find
        got = [e for page in all_pages(history, limit, **filters) for e in ids(page)]
        assert got == wanted, filters

    sid = schedules[0]
    expect(lambda r: r.schedule_id == sid, schedule_id=sid)
    expect(lambda r: r.status == "failed", statuses=["failed"])
    expect(lambda r: r.status == "failed", statuses=["failed", "failed"])
    expect(lambda r: r.status in ("running", "skipped"), statuses=("running", "skipped", "running"))
    expect(lambda r: True, statuses=[])  # no status named: no status filter
    expect(lambda r: r.trigger == "catchup", trigger="catchup")
    expect(lambda r: r.instance_id == "beta", instance_id="beta")
    expect(
        lambda r: r.schedule_id == sid and r.status != "completed" and r.instance_id == "alpha",
        limit=2,
        schedule_id=sid,
        statuses=[s for s in STATUSES if s != "completed"],
        instance_id="alpha",
    )
    assert history.page_executions(instance_id="nobody") == ([], None)
    assert history.page_executions(schedule_id=uuid.uuid4()) == ([], None)


def test_since_is_inclusive_and_until_exclusive(history: JobHistory, rows: list[Row]) -> None:
    moments = sorted({r.started_at for r in rows})
    since, until = moments[10], moments[-10]  # each is the started_at of at least one row

    def window(low: datetime | None, high: datetime | None) -> list[UUID]:
        return newest_first(
            [
                r
                for r in rows
                if (low is None or r.started_at >= low) and (high is None or r.started_at < high)
            ]
        )

    for low, high in [(since, None), (None, until), (since, until), (until, since)]:
        for limit in (4, 500):
            pages = all_pages(history, limit, since=low, until=high)
            assert [e for page in pages for e in ids(page)] == window(low, high), (low, high)
    # A boundary given in another zone is the same instant.
    elsewhere = since.astimezone(ZoneInfo("Asia/Kathmandu"))
    got = [e for page in all_pages(history, 50, since=elsewhere) for e in ids(page)]
    assert got == window(since, None)
    # A cursor from before `until` was narrowed still pages on below both.
    first, cursor = history.page_executions(limit=5)
    rest = [e for page in all_pages(history, 500, until=until) for e in ids(page)]
    items, _ = history.page_executions(limit=500, until=until, cursor=cursor)
    assert ids(items) == [e for e in rest if e not in ids(first)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"limit": 0}, "limit must be an integer 1-500, got 0"),
        ({"limit": 501}, "limit must be an integer 1-500, got 501"),
        ({"limit": True}, "limit must be an integer 1-500"),
        ({"limit": "50"}, "limit must be an integer 1-500"),
        ({"statuses": ["done"]}, "status 'done' is not one of"),
        ({"statuses": "failed"}, "statuses must be a list"),
        ({"trigger": "cron"}, "trigger 'cron' is not one of"),
        ({"schedule_id": "x"}, "schedule id 'x' is not a UUID"),
        ({"since": datetime(2026, 1, 1)}, "since must be timezone-aware"),
        ({"until": "2026-01-01"}, "until must be a datetime"),
        ({"instance_id": 5}, "instance_id must be a string"),
    ],
)
def test_bad_arguments_raise_a_scheduler_error(
    history: JobHistory, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(SchedulerError, match=message):
        history.page_executions(**arguments)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!",
        "",
        "MTI",  # an audit cursor: one int, not (started_at, execution_id)
        encode_cursor([BASE, "not a uuid"]),
        encode_cursor([BASE, uuid.uuid4(), 1]),
        "A" * 2000,
    ],
)
def test_a_cursor_not_handed_out_is_invalid(history: JobHistory, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="cursor"):
        history.page_executions(cursor=cursor)


# -- statistics -------------------------------------------------------------------------------

HOUR, DAY = 3600.0, 86400.0


def add_runs(
    db: DatabaseConnection, runs: list[tuple[str, float, float | None, UUID | None]]
) -> None:
    """(status, seconds ago, duration, schedule) per row."""
    insert(
        db,
        [
            {
                "execution_id": uuid.uuid4(),
                "status": status,
                "ago": ago,
                "duration": duration,
                "schedule_id": sid,
            }
            for status, ago, duration, sid in runs
        ],
    )


def test_statistics_with_known_durations(
    db: DatabaseConnection, history: JobHistory, schedules: list[UUID | None]
) -> None:
    mine = schedules[0]
    mine_durations = [0.5, 1.0, 1.5, 2.0, 10.0]
    other_durations = [3.0, 4.0, 7.25, 8.0, 9.0, 11.0, 30.0, 0.25, 6.0, 5.5, 2.5, 1.75]
    runs: list[tuple[str, float, float | None, UUID | None]] = []
    runs += [("completed", (i + 1) * HOUR, d, mine) for i, d in enumerate(mine_durations)]
    statuses = ["completed", "failed", "timed_out", "abandoned", "cancelled", "failed"]
    runs += [(statuses[i % 6], (i + 1) * HOUR, d, None) for i, d in enumerate(other_durations)]
    runs += [
        ("failed", 2 * HOUR, None, mine),  # a run without a duration: counted, not timed
        ("skipped", 3 * HOUR, 99.0, mine),  # never ran: neither counted nor timed
        ("skipped", 4 * HOUR, 0.0, None),
        ("running", 5 * HOUR, None, mine),  # no outcome yet
        ("completed", 8 * DAY, 500.0, mine),  # outside a 7-day window
    ]
    add_runs(db, runs)

    timed = mine_durations + other_durations
    p95 = statistics.quantiles(timed, n=20, method="inclusive")[18]
    stats = history.execution_stats()
    assert stats == {
        "total_executions": 18,
        "successful": 5 + 2,
        "failed": 5 + 2 + 2,  # failed, timed_out, abandoned
        "success_rate": 38.89,  # 7 / 18
        "avg_duration": pytest.approx(statistics.fmean(timed)),
        "min_duration": 0.25,
        "max_duration": 30.0,
        "p50_duration": pytest.approx(statistics.median(timed)),
        "p95_duration": pytest.approx(p95),
        "by_status": {
            "running": 1,
            "completed": 7,
            "failed": 5,
            "timed_out": 2,
            "abandoned": 2,
            "cancelled": 2,
            "skipped": 2,
        },
    }
    order = ("running", "completed", "failed", "timed_out", "abandoned", "cancelled", "skipped")
    assert tuple(stats["by_status"]) == order
    # The overview's count: the same as one day of execution_stats, without the durations.
    day = history.execution_stats(days=1)["by_status"]
    assert history.status_counts(hours=24) == day
    assert tuple(history.status_counts(hours=24)) == tuple(day)
    assert history.status_counts(hours=9 * 24)["completed"] == 8  # the run of 8 days ago too
    # By hand: 17 durations sorted, p95 sits at 0.95 * 16 = 15.2 -> 11.0 + 0.2 * (30.0 - 11.0)
    assert stats["p95_duration"] == pytest.approx(14.8)
    assert stats["p50_duration"] == pytest.approx(4.0)
    # The seed-001 keys mean the same as get_execution_statistics'.
    seed = history.get_execution_statistics()
    assert {k: seed[k] for k in list(seed)[:7]} == {k: stats[k] for k in list(stats)[:7]}

    one = history.execution_stats(days=7, schedule_id=mine)
    assert one == {
        "total_executions": 6,
        "successful": 5,
        "failed": 1,
        "success_rate": 83.33,
        "avg_duration": pytest.approx(3.0),
        "min_duration": 0.5,
        "max_duration": 10.0,
        "p50_duration": pytest.approx(1.5),
        # 5 durations sorted: p95 sits at 0.95 * 4 = 3.8 -> 2.0 + 0.8 * (10.0 - 2.0)
        "p95_duration": pytest.approx(8.4),
        "by_status": {"running": 1, "completed": 5, "failed": 1, "skipped": 1},
    }
    wider = history.execution_stats(days=8.5, schedule_id=mine)
    assert (wider["total_executions"], wider["max_duration"]) == (7, 500.0)
    assert wider["p50_duration"] == pytest.approx(statistics.median([*mine_durations, 500.0]))


def test_statistics_without_runs(
    db: DatabaseConnection, history: JobHistory, schedules: list[UUID | None]
) -> None:
    empty = {
        "total_executions": 0,
        "successful": 0,
        "failed": 0,
        "success_rate": 0.0,
        "avg_duration": None,
        "min_duration": None,
        "max_duration": None,
        "p50_duration": None,
        "p95_duration": None,
        "by_status": {},
    }
    assert history.execution_stats() == empty
    add_runs(
        db, [("skipped", 60, 5.0, None), ("running", 30, None, None), ("failed", 20, None, None)]
    )
    stats = history.execution_stats()
    assert stats == {
        **empty,
        "total_executions": 1,
        "failed": 1,
        "by_status": {"running": 1, "failed": 1, "skipped": 1},
    }
    assert history.execution_stats(schedule_id=schedules[0]) == empty


@pytest.mark.parametrize("days", [0, -1, float("nan"), float("inf"), True, "7"])
def test_statistics_need_a_finite_positive_window(history: JobHistory, days: Any) -> None:
    with pytest.raises(SchedulerError, match="days must be"):
        history.execution_stats(days=days)


# -- one run with its output ----------------------------------------------------------------


def test_one_run_reads_back_with_the_output_its_handler_stored(
    db: DatabaseConnection, history: JobHistory, schedules: list[UUID | None]
) -> None:
    sid = schedules[0]
    assert sid is not None
    store = ExecutionStore(db, "test-instance")
    key = OccurrenceKey(sid, BASE, 1, "manual", "job", "example.com", uuid.uuid4())
    (claim,) = store.claim_many([(key, uuid.uuid4())])
    assert claim is not None and not isinstance(claim, BaseException)
    script = "echo one; echo two; echo 'it broke' >&2; exit 3"
    outcome = CommandHandler(allowlist=["sh"]).run(
        make_context({"argv": ["sh", "-c", script]}, job_type="command")
    )
    result = FinalResult(
        execution_id=claim.execution_id,
        fencing_token=claim.fencing_token,
        status=outcome.status.value,
        duration_seconds=0.1,
        error_message=outcome.error_message,
        error_details=outcome.error_details,
        metadata=outcome.metadata,
        scan_id=None,
        next_run=None,
    )
    assert store.finish(result) == (True, True)

    execution = history.get_execution(claim.execution_id)
    assert execution is not None
    assert execution.status == "failed"
    assert execution.metadata is not None and execution.metadata["stdout_tail"] == "one\ntwo\n"
    assert execution.error_details is not None
    assert execution.error_details["stderr_tail"] == "it broke\n"
    assert output_tail(execution) == "[stdout]\none\ntwo\n[stderr]\nit broke"
    assert output_tail(execution, max_chars=30) == "[stdout]\n…\ntwo\n[stderr]\n…broke"
    # The page shows the same row, output included.
    (listed,), _ = history.page_executions(schedule_id=sid)
    assert listed == execution


def test_pages_and_stats_are_planned_with_their_filters_every_time(
    database_url: str, rows: list[Row], schedules: list[UUID | None]
) -> None:
    """psycopg prepares a statement run 5 times on a connection, and PostgreSQL then soon
    plans it once for any parameters: a plan that cannot use the schedule's index when a
    schedule_id is given (seen at 200,000 rows: 4-7 ms a page instead of 1). These statements
    are never prepared."""
    one = DatabaseConnection(database_url, min_size=1, max_size=1)
    try:
        history = JobHistory(one)
        for _ in range(8):
            history.page_executions(limit=5)
            history.page_executions(schedule_id=schedules[0], statuses=["failed"])
            history.execution_stats(schedule_id=schedules[1])
            history.get_execution_statistics()
        prepared = one.fetch_all("SELECT statement FROM pg_prepared_statements")
        assert [p for p in prepared if "job_executions" in p["statement"]] == []
    finally:
        one.close()
