"""A busy install's history for the dashboard benchmark: runs, a few running, and audit rows.

`insert_history(url, rows)` writes `rows` job_executions over the last DAYS days, after the
schedules are in (varied_schedules.py):

- HOT schedules run every 10 minutes (DAYS * 144 runs each: thousands, the schedule page's
  worst case); their share is a sixth of the rows at full size;
- the other rows fall on SPREAD enabled schedules (about 40 runs each at full size), at random
  instants of the window; the remaining schedules have no run at all;
- statuses: completed 85 %, failed 7 %, skipped 3 %, timed_out 2 %, abandoned 1 %, cancelled
  1 %, the rest completed; failed and timed-out runs carry an error_message, and most runs an
  output in metadata (a command's stdout/stderr tails, or an http job's status and body tail);
  durations are skewed (most well under a second, a tail of minutes); triggers mostly
  `schedule`, a few retries, manual runs and catch-ups; RUNNING rows started minutes ago.

`insert_audit(url, n)` makes `n` configuration changes through UPDATE, so the audit trigger
writes the rows as it would for an operator's edits (its actor set like the API sets it).
"""

from __future__ import annotations

import time

import psycopg

DAYS = 60
HOT = 20
RUNNING = 6

_PICK = """
CREATE TEMP TABLE bench_picked AS
SELECT row_number() OVER (ORDER BY schedule_id) AS n, schedule_id, domain, domain_config_id
FROM schedules WHERE enabled;
"""

# One statement for both kinds: hot rows are every 10 minutes of the window, spread rows at a
# random instant of it. {rows}, {hot_rows}, {spread}, {days} are filled in below.
_INSERT = """
INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id, status, started_at,
    completed_at, duration_seconds, scheduled_for, instance_id, trigger, error_message, metadata)
SELECT p.schedule_id, 'job-' || p.n, p.domain, p.domain_config_id, q.status, q.at,
    q.at + q.duration * interval '1 second', q.duration, q.at - interval '150 milliseconds',
    'instance-' || (q.g % 3),
    CASE WHEN q.r2 < 0.93 THEN 'schedule' WHEN q.r2 < 0.97 THEN 'retry'
         WHEN q.r2 < 0.99 THEN 'manual' ELSE 'catchup' END,
    CASE q.status
        WHEN 'failed' THEN 'HTTP 503 Service Unavailable from https://' || p.domain || '/health'
        WHEN 'timed_out' THEN 'timed out after 300 s'
        WHEN 'abandoned' THEN 'instance instance-' || (q.g % 3) || ' stopped heartbeating'
    END,
    CASE WHEN q.status = 'skipped' THEN NULL
         WHEN q.r3 < 0.5 THEN jsonb_build_object(
             'returncode', CASE WHEN q.status = 'completed' THEN 0 ELSE 1 END,
             'stdout_tail', repeat('crawled page ' || q.g || E'\\n', 12),
             'stdout_bytes', 4096,
             'stderr_tail', CASE WHEN q.status = 'completed' THEN ''
                                 ELSE repeat(E'Traceback: ConnectionError\\n', 6) END)
         WHEN q.r3 < 0.9 THEN jsonb_build_object(
             'http_status', CASE WHEN q.status = 'completed' THEN 200 ELSE 503 END,
             'body_tail', repeat('<p>ok</p>', 20))
    END
FROM (
    SELECT g, r2, r3,
        CASE WHEN r < 0.85 THEN 'completed' WHEN r < 0.92 THEN 'failed'
             WHEN r < 0.95 THEN 'skipped' WHEN r < 0.97 THEN 'timed_out'
             WHEN r < 0.98 THEN 'abandoned' WHEN r < 0.99 THEN 'cancelled'
             ELSE 'completed' END AS status,
        CASE WHEN g <= {hot_rows}
             THEN now() - (g / {hot}) * interval '10 minutes' - (g % {hot}) * interval '7 seconds'
             ELSE now() - random() * interval '{days} days' END AS at,
        CASE WHEN g <= {hot_rows} THEN 1 + (g - 1) % {hot}
             ELSE 1 + {hot} + g % {spread} END AS pick,
        round((exp(random() * 6) / 40)::numeric, 3)::double precision AS duration
    FROM (SELECT g, random() AS r, random() AS r2, random() AS r3
          FROM generate_series(1, {rows}) AS g) AS raw
) AS q
JOIN bench_picked AS p ON p.n = q.pick
ON CONFLICT ON CONSTRAINT job_executions_occurrence_key DO NOTHING;
"""

_RUNNING = """
INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id, status, started_at,
    scheduled_for, instance_id)
SELECT schedule_id, 'job-' || n, domain, domain_config_id, 'running',
    now() - n * interval '1 minute', now() - n * interval '1 minute', 'instance-' || (n % 3)
FROM bench_picked WHERE n > {hot} ORDER BY n LIMIT {running};
"""

_AUDIT = """
BEGIN;
SET LOCAL scheduler.actor = 'api:bench-ops';
UPDATE schedules SET name = coalesce(name, domain) || ' (renamed)'
WHERE schedule_id IN (SELECT schedule_id FROM schedules ORDER BY domain LIMIT {n});
COMMIT;
"""


def hot_rows(rows: int) -> int:
    """Rows of the HOT schedules: every 10 minutes of DAYS days, at most a sixth of `rows`."""
    return min(HOT * DAYS * 144, rows // 6)


def spread(rows: int) -> int:
    """How many schedules share the other rows: about 40 runs each."""
    return max(1, (rows - hot_rows(rows)) // 40)


def insert_history(url: str, rows: int) -> float:
    """Insert the runs (see the module's docstring); returns the seconds it took."""
    started = time.perf_counter()
    fill = {
        "{rows}": rows,
        "{hot_rows}": hot_rows(rows),
        "{hot}": HOT,
        "{spread}": spread(rows),
        "{days}": DAYS,
        "{running}": RUNNING,
    }
    statement = _INSERT
    running = _RUNNING
    for key, value in fill.items():
        statement = statement.replace(key, str(value))
        running = running.replace(key, str(value))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_PICK)
        conn.execute(statement.encode())
        conn.execute(running.encode())
    return time.perf_counter() - started


def insert_audit(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_AUDIT.replace("{n}", str(n)).encode())


def vacuum_analyze(url: str) -> None:
    """As autovacuum would have by now: statistics, and a visibility map for index-only scans."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("job_executions", "schedules", "schedule_audit"):
            conn.execute(f"VACUUM ANALYZE {table}".encode())


def hot_schedule(url: str) -> tuple[str, int]:
    """(schedule_id, runs) of the schedule with the most runs."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT schedule_id::text, count(*) FROM job_executions GROUP BY 1 "
            "ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return row[0], int(row[1])


def idle_schedule(url: str) -> str:
    """An enabled schedule without a run."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT s.schedule_id::text FROM schedules s WHERE s.enabled AND NOT EXISTS "
            "(SELECT 1 FROM job_executions e WHERE e.schedule_id = s.schedule_id) LIMIT 1"
        ).fetchone()
    assert row is not None
    return str(row[0])


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()[0])  # type: ignore[index]
            for table in ("schedules", "job_executions", "schedule_audit")
        }
