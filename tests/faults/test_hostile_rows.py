"""Case 5: hostile rows inserted by SQL, as an operator (or an attacker with SQL access) could.

Each row of the catalogue (tests/faults/hostile.py) must end `invalid` or `expired` with the
exact reason in `last_error`, or, for jobs, run and be recorded `failed` with the exact reason;
nothing outside the allowlists may run (the forbidden commands would leave marker files); the
watcher must go on applying changes, and 100 ordinary schedules must keep firing on time. The
catalogue is inserted twice: once before the daemon starts (the start-up load) and once while
it runs (the watcher). Inserts the schema itself refuses must fail cleanly.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.faults.common import (
    NOOP,
    Spawn,
    db_now,
    engine_env,
    keep_alive_for,
    lateness,
    percentile,
    scaled,
)
from tests.faults.hostile import (
    COMMAND_ALLOWLIST,
    PYTHON_ALLOWLIST,
    Hostile,
    catalogue,
    edge_rows,
    json_text,
)
from tests.faults.invariants import CaseRecord, Ending, check_invariants
from tests.support.daemon import DaemonProcess
from tests.support.schedules import (
    insert_interval_schedule,
    insert_interval_schedules,
    query,
)
from tests.support.waiting import wait_until

DURATION = scaled(60)
LATENESS_P99_BOUND = 2.0  # seconds: the ordinary schedules must stay on time
CRASH_EVENTS = {
    "watcher.pass_crashed",
    "executor.unhandled_error",
    "thread.died_restarting",
    "lock.renew_crashed",
}
EXCEPTION_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception)\b")
Placed = list[tuple[Hostile, Any]]  # (catalogue entry, its schedule_id)


def hostile_env(env: dict[str, str]) -> dict[str, str]:
    return engine_env(
        env,
        COMMAND_ALLOWLIST=COMMAND_ALLOWLIST,
        PYTHON_HANDLER_ALLOWLIST=PYTHON_ALLOWLIST,
        SCHEDULE_CHECK_INTERVAL="1",
        MAX_WORKERS="10",
    )


def insert_hostile(url: str, rows: Sequence[Hostile], tag: str) -> Placed:
    """Every row in one transaction, each by a plain INSERT (JSON sent as text)."""
    placed: Placed = []
    with psycopg.connect(url) as conn:
        for n, row in enumerate(rows):
            (sid,) = conn.execute(
                "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, "
                "job_type, payload) VALUES (gen_random_uuid(), %s, %s, %s::jsonb, %s, %s::jsonb) "
                "RETURNING schedule_id",
                (
                    f"hostile-{tag}-{n}.example",
                    row.frequency,
                    json_text(row.time_config),
                    row.job_type,
                    json_text(row.payload),
                ),
            ).fetchone()
            placed.append((row, sid))
    return placed


def outcome_problems(url: str, placed: Placed) -> list[str]:
    """What is not (yet) as the catalogue says; [] when every row has its outcome."""
    ids = [sid for _, sid in placed]
    marks = {
        r["schedule_id"]: r
        for r in query(
            url,
            "SELECT schedule_id, last_status, last_error FROM schedules "
            "WHERE schedule_id = ANY(%s)",
            (ids,),
        )
    }
    runs: dict[Any, list[dict[str, Any]]] = {}
    for r in query(
        url,
        "SELECT schedule_id, status, error_message FROM job_executions WHERE schedule_id = ANY(%s)",
        (ids,),
    ):
        runs.setdefault(r["schedule_id"], []).append(r)
    problems = []
    for row, sid in placed:
        mark, got = marks[sid], runs.get(sid, [])
        if row.expect in ("invalid", "expired"):
            if got:
                problems.append(f"{row.label}: ran although {row.expect}: {got[:2]}")
            if mark["last_status"] != row.expect or not row.reason_matches(mark["last_error"]):
                problems.append(
                    f"{row.label}: last_status={mark['last_status']!r} "
                    f"last_error={(mark['last_error'] or '')[:300]!r}; expected {row.expect!r} "
                    f"{row.match} {row.reason[:300]!r}"
                )
        elif not got:
            problems.append(f"{row.label}: no run yet (expected {row.expect})")
        else:
            wrong = [
                r
                for r in got
                if r["status"] != row.expect
                or (row.expect == "failed" and not row.reason_matches(r["error_message"]))
            ]
            if wrong:
                problems.append(
                    f"{row.label}: expected {row.expect} {row.reason[:200]!r}, got "
                    f"{wrong[0]['status']} {(wrong[0]['error_message'] or '')[:300]!r}"
                )
    return problems


def wait_for_outcomes(url: str, placed: Placed, timeout: float) -> list[str]:
    """Poll until every row has its outcome, or the time is up: the problems left."""
    deadline = time.monotonic() + timeout
    while (problems := outcome_problems(url, placed)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return problems


def crash_events(daemon: DaemonProcess, since: int = 0) -> list[str]:
    """Error-level events (from the `since`-th event on), one line per distinct kind."""
    seen: Counter[str] = Counter()
    for event in daemon.events()[since:]:
        if event.get("event") in CRASH_EVENTS or event.get("level") in ("error", "critical"):
            trace = str(event.get("exception") or event.get("error") or "").splitlines()
            last = next((ln.strip() for ln in reversed(trace) if ln.strip(" ^~")), "")
            seen[f"{event.get('event')}: {last[:300]}"] += 1
    return [f"{line} (x{n})" for line, n in seen.items()]


def wait_for_run(url: str, schedule_id: Any, timeout: float) -> bool:
    try:
        wait_until(
            lambda: query(
                url,
                "SELECT 1 FROM job_executions WHERE schedule_id = %s AND status = 'completed'",
                (schedule_id,),
            ),
            timeout,
            0.2,
        )
    except AssertionError:
        return False
    return True


@pytest.mark.timeout(int(180 + 2 * DURATION))
def test_hostile_rows_are_refused_exactly_and_the_rest_fire_on_time(
    env: dict[str, str],
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()  # so that a forbidden `touch` would succeed
    rows = catalogue(markers)
    good = insert_interval_schedules(database_url, 100, seconds=1, job_type="python", payload=NOOP)
    at_boot = insert_hostile(database_url, rows, "boot")
    daemon = spawn(hostile_env(env), "inst-a").start(timeout=60)
    start = db_now(database_url)
    began = time.monotonic()
    problems = wait_for_outcomes(database_url, at_boot, 30)
    problems = [f"[start-up load] {p}" for p in problems]

    keep_alive_for(3, [daemon])
    live = insert_hostile(database_url, rows, "live")
    problems += [f"[watcher] {p}" for p in wait_for_outcomes(database_url, live, 30)]

    # The watcher still applies changes after all that: a new schedule runs within seconds.
    sentinel = insert_interval_schedule(database_url, seconds=1, job_type="python", payload=NOOP)
    if not wait_for_run(database_url, sentinel["schedule_id"], 15):
        problems.append("a schedule added after the hostile rows never ran: watcher stuck?")
    keep_alive_for(max(0.0, began + DURATION - time.monotonic()), [daemon])
    end = db_now(database_url)
    assert daemon.terminate(timeout=40) == 0, daemon.tail()
    endings = [Ending(daemon.instance_id, db_now(database_url))]

    report = check_invariants(
        CaseRecord(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            lock_timeout=3.0,
            check_interval=5.0,
            heartbeat_ttl=1.5,
            endings=endings,
            schedules=good,
            period=1,
            healthy=[(start, end)],
            daemons=[daemon],
        )
    )
    good_ids = {g["schedule_id"] for g in good}
    late = lateness(
        r for r in report.rows if r["schedule_id"] in good_ids and start <= r["scheduled_for"]
    )
    p50, p99 = percentile(late, 50), percentile(late, 99)
    print(f"\ncase 5: {len(rows)} hostile rows x2; {report}")
    print(f"case 5 lateness of the 100 ordinary schedules: p50 {p50:.3f} s, p99 {p99:.3f} s")
    problems += [f"a forbidden command ran: {m.name}" for m in markers.iterdir()]
    problems += crash_events(daemon)
    if p99 > LATENESS_P99_BOUND:
        problems.append(f"ordinary schedules late: p99 {p99:.2f} s > {LATENESS_P99_BOUND} s")
    assert problems == [], f"{len(problems)} problem(s):\n" + "\n".join(problems[:80])


@pytest.mark.timeout(300)
def test_rows_at_datetime_limits_or_nested_too_deep_neither_crash_nor_block(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    """Rows Python's datetime or JSON decoder cannot take, one at a time so that each is judged
    on its own: the watcher must mark it and go on applying other changes (a schedule added
    after it runs), and the daemon must start with it in the table. Each is deleted after its
    turn, so that one row's damage does not hide the next one's."""
    insert_interval_schedules(database_url, 10, seconds=1, job_type="python", payload=NOOP)
    daemon = spawn(hostile_env(env), "inst-a").start(timeout=60)
    problems: list[str] = []

    def delete(placed: Placed) -> None:
        query(database_url, "DELETE FROM schedules WHERE schedule_id = %s", (placed[0][1],))

    for row in edge_rows():
        mark = len(daemon.events())
        placed = insert_hostile(database_url, [row], "edge")
        sentinel = insert_interval_schedule(
            database_url, seconds=1, job_type="python", payload=NOOP
        )
        problems += [f"[watcher] {p}" for p in wait_for_outcomes(database_url, placed, 8)]
        if not wait_for_run(database_url, sentinel["schedule_id"], 8):
            problems.append(f"[watcher] {row.label}: a schedule added after it never ran")
        problems += [f"[watcher] {row.label}: {c}" for c in crash_events(daemon, mark)]
        delete(placed)
    assert daemon.terminate(timeout=40) == 0, daemon.tail()

    for n, row in enumerate(edge_rows()):
        placed = insert_hostile(database_url, [row], "boot")
        again = spawn(hostile_env(env), "inst-a", log_name=f"inst-a-start-{n}")
        try:
            again.start(timeout=60)
        except AssertionError as exc:
            error = [ln for ln in str(exc).splitlines() if EXCEPTION_LINE.match(ln)]
            problems.append(
                f"[start-up] {row.label}: the daemon does not start: {(error or [''])[-1]}"
            )
        else:
            problems += [f"[start-up] {p}" for p in wait_for_outcomes(database_url, placed, 5)]
            problems += [f"[start-up] {row.label}: {c}" for c in crash_events(again)]
            assert again.terminate(timeout=40) == 0, again.tail()
        delete(placed)
    assert problems == [], f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.timeout(60)
def test_inserts_the_schema_refuses_fail_cleanly(database_url: str) -> None:
    """A 10,000-character domain, NUL bytes (jsonb cannot hold \\u0000, text cannot hold NUL),
    a non-object payload, a blank domain, NULL frequency or time_config: the INSERT itself
    fails with the database's own error, nothing is written, the connection stays usable."""
    columns = "domain_config_id, domain, frequency, time_config, payload"
    valid = {"domain": "example.com", "frequency": "interval", "time_config": {"seconds": 60}}
    cases: list[tuple[str, dict[str, Any], type[Exception]]] = [
        (
            "10,000-character domain",
            {"domain": "d" * 10_000},
            psycopg.errors.StringDataRightTruncation,
        ),
        (
            "NUL in payload (jsonb)",
            {"payload": {"x": "a\x00b"}},
            psycopg.errors.UntranslatableCharacter,
        ),
        (
            "NUL in a time_config key (jsonb)",
            {"time_config": {"seconds": 60, "a\x00": 1}},
            psycopg.errors.UntranslatableCharacter,
        ),
        ("NUL in domain (text)", {"domain": "evil\x00.example"}, psycopg.DataError),
        ("NUL in frequency (text)", {"frequency": "interval\x00"}, psycopg.DataError),
        ("payload not an object", {"payload": [1, 2]}, psycopg.errors.CheckViolation),
        ("blank domain", {"domain": "   "}, psycopg.errors.CheckViolation),
        ("NULL frequency", {"frequency": None}, psycopg.errors.NotNullViolation),
        ("NULL time_config", {"time_config": None}, psycopg.errors.NotNullViolation),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM schedules").fetchone()
        for label, change, error in cases:
            row = {**valid, "payload": {}, **change}
            jsonb = {
                k: (None if row[k] is None else Jsonb(row[k])) for k in ("time_config", "payload")
            }
            with pytest.raises(error) as raised:
                conn.execute(
                    f"INSERT INTO schedules ({columns}) VALUES (gen_random_uuid(), %s, %s, %s, %s)",
                    (row["domain"], row["frequency"], jsonb["time_config"], jsonb["payload"]),
                )
            print(f"{label}: {type(raised.value).__name__}: {str(raised.value).splitlines()[0]}")
            assert conn.execute("SELECT 1").fetchone() == (1,), f"{label}: connection broken"
        assert conn.execute("SELECT count(*) FROM schedules").fetchone() == before
