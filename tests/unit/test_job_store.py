from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.triggers.date import DateTrigger

from services.scheduling.job_store import HeapJobStore, build_job

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def job(job_id: str, seconds: float) -> object:
    when = T0 + timedelta(seconds=seconds)
    return build_job(
        None,
        job_id=job_id,
        func=print,
        trigger=DateTrigger(when),
        args=(job_id,),
        name=job_id,
        next_run_time=when,
        max_instances=1,
    )


def test_due_jobs_come_in_fire_time_order_and_stay_until_updated() -> None:
    store = HeapJobStore()
    for job_id, seconds in (("c", 3), ("a", 1), ("b", 2), ("later", 60)):
        store.add_job(job(job_id, seconds))
    due = store.get_due_jobs(T0 + timedelta(seconds=5))
    assert [j.id for j in due] == ["a", "b", "c"]
    assert [j.id for j in store.get_due_jobs(T0 + timedelta(seconds=5))] == ["a", "b", "c"]
    store.update_job(job("a", 30))
    store.remove_job("b")
    assert [j.id for j in store.get_due_jobs(T0 + timedelta(seconds=5))] == ["c"]
    assert store.get_next_run_time() == T0 + timedelta(seconds=3)
    assert [j.id for j in store.get_all_jobs()] == ["c", "a", "later"]


def test_conflicts_lookups_and_stale_entries() -> None:
    store = HeapJobStore()
    store.add_job(job("x", 10))
    with pytest.raises(ConflictingIdError):
        store.add_job(job("x", 20))
    with pytest.raises(JobLookupError):
        store.update_job(job("missing", 1))
    with pytest.raises(JobLookupError):
        store.remove_job("missing")
    for seconds in range(5000):  # many reschedules: stale entries are compacted away
        store.put_job(job("x", 10 + seconds))
    assert len(store._heap) <= 2 * len(store) + 1024
    assert store.get_next_run_time() == T0 + timedelta(seconds=5009)
    assert store.discard_job("x") and not store.discard_job("x")
    assert store.get_next_run_time() is None and store.get_due_jobs(T0 + timedelta(days=1)) == []
