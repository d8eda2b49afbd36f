"""Case 4: clock skew. Three in-process EnhancedScheduler instances share the work; one's clock
runs 2 s fast (`SystemClock(offset_seconds=2)`), one's 2 s slow. Occurrences are computed from
the schedule alone (anchor + k·period, whole seconds, UTC), so a skewed instance competes for
the very same occurrences: still exactly one row per occurrence, and every one of them run.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from psycopg.types.json import Jsonb

from services.clock import SystemClock
from services.config import load_settings
from services.enhanced_scheduler import EnhancedScheduler
from tests.faults.common import NOOP, db_now, engine_env, scaled
from tests.faults.invariants import CaseRecord, Ending, check_invariants
from tests.support.schedules import insert_interval_schedules, interval_occurrences, query

DURATION = scaled(40)
OFFSETS = {"inst-true": 0.0, "inst-fast": 2.0, "inst-slow": -2.0}
LOCK_TIMEOUT, HEARTBEAT = 3.0, 0.5


@pytest.mark.timeout(int(90 + 2 * DURATION))
def test_skewed_clocks_still_give_one_row_per_occurrence(
    env: dict[str, str], database_url: str, redis_url: str, redis_prefix: str
) -> None:
    schedules = insert_interval_schedules(
        database_url, 20, seconds=1, job_type="python", payload=NOOP
    )
    # Crons with a seconds field fire on every whole second: the same grid as a 1 s interval.
    schedules += query(
        database_url,
        """
        INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, payload)
        SELECT gen_random_uuid(), 'example.com', 'cron', %s, 'python', %s
        FROM generate_series(1, 10) RETURNING schedule_id, created_at
        """,
        (Jsonb({"expression": "* * * * * *"}), Jsonb(NOOP)),
    )
    threads_before = {t.ident for t in threading.enumerate()}
    instances, runners = [], []
    for name, offset in OFFSETS.items():
        settings = load_settings(
            engine_env(
                env,
                INSTANCE_ID=name,
                LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
                HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}",
            )
        )
        instance = EnhancedScheduler(settings=settings, clock=SystemClock(offset_seconds=offset))
        instances.append(instance)
        runners.append(threading.Thread(target=instance.run, name=f"test-run-{name}"))
    try:
        for instance in instances:
            instance.start()
        for runner in runners:
            runner.start()
        start = db_now(database_url)
        stop = threading.Event()
        assert not stop.wait(DURATION)  # the case is a stretch of time
        end = db_now(database_url)
    finally:
        endings = []
        for instance, runner in zip(instances, runners, strict=True):
            instance.stop()
            if runner.is_alive():
                runner.join(30)
            else:
                instance.shutdown()
            assert not runner.is_alive(), f"{instance.instance_id} did not stop"
            endings.append(Ending(instance.instance_id, db_now(database_url)))

    report = check_invariants(
        CaseRecord(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            lock_timeout=LOCK_TIMEOUT,
            check_interval=6 * HEARTBEAT + 2,
            heartbeat_ttl=3 * HEARTBEAT,
            endings=endings,
            schedules=schedules,
            period=1,
            healthy=[(start, end)],
            threads_before=threads_before,
        )
    )
    print(f"\ncase 4: {report}")
    # Exactly one row per occurrence, and each one ran (nothing skipped for being "late").
    rows = {(r["schedule_id"], r["scheduled_for"]): r for r in report.rows}
    edge = timedelta(seconds=1.5)
    not_run = [
        (sid, moment, rows[(sid, moment)]["status"], rows[(sid, moment)]["error_message"])
        for schedule in schedules
        for moment in interval_occurrences(schedule["created_at"], 1, start + edge, end - edge)
        if rows[(sid := schedule["schedule_id"], moment)]["status"] != "completed"
    ]
    assert not_run == [], not_run[:20]
    by_instance = Counter(r["instance_id"] for r in report.rows if r["status"] == "completed")
    print(f"case 4 runs per instance: {dict(by_instance)}")
    assert set(by_instance) == set(OFFSETS), "an instance ran nothing: the skew kept it out?"
