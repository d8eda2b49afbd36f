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


def test_schedule_jobs_are_kept_as_entries_and_handed_out_as_jobs() -> None:
    from services.model.spec import parse_schedule
    from services.scheduling.job_store import ScheduleEntry
    from services.scheduling.trigger import ScheduleTrigger

    spec = parse_schedule("interval", {"seconds": 60}, schedule_id="s1", created_at=T0)
    store = HeapJobStore(max_instances=3)
    store.put_schedule("s1", spec, print, T0 + timedelta(seconds=1))
    store.add_job(job("retry", 2))  # a DateTrigger job stays a Job
    assert isinstance(store._jobs["s1"], ScheduleEntry)
    assert not isinstance(store._jobs["retry"], ScheduleEntry)
    (due, retry) = store.get_due_jobs(T0 + timedelta(seconds=5))
    assert (due.id, due.args, due.kwargs, due.func, due.max_instances) == (
        "s1",
        ("s1",),
        {},
        print,
        3,
    )
    assert isinstance(due.trigger, ScheduleTrigger) and due.trigger.spec is spec
    assert retry.id == "retry"
    # The scheduler reschedules what it got: the store keeps the new time, as an entry again.
    due.next_run_time = T0 + timedelta(seconds=61)
    store.update_job(due)
    assert isinstance(store._jobs["s1"], ScheduleEntry)
    assert store.next_run_time_of("s1") == T0 + timedelta(seconds=61)
    assert store.lookup_job("s1").next_run_time == T0 + timedelta(seconds=61)  # type: ignore[union-attr]
    assert [j.id for j in store.get_due_jobs(T0 + timedelta(seconds=5))] == ["retry"]
    assert store.next_run_time_of("missing") is None and store.lookup_job("missing") is None
