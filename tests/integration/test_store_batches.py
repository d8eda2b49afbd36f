"""ExecutionStore.claim_many / finish_many against this test's own PostgreSQL database."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from database.connection import DatabaseConnection
from services.errors import DatabaseError
from services.model.occurrence import Claim, FinalResult, OccurrenceKey
from services.store.executions import ExecutionStore
from tests.support.schedules import insert_interval_schedules, query

pytestmark = pytest.mark.timeout(60)

INSTANCE = "store-test"
BASE = datetime(2030, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
def store(db: DatabaseConnection) -> ExecutionStore:
    return ExecutionStore(db, INSTANCE)


def schedules(url: str, n: int) -> list[dict[str, Any]]:
    ids = [
        r["schedule_id"]
        for r in insert_interval_schedules(url, n, seconds=3600, payload={}, job_type="python")
    ]
    rows = query(url, "SELECT * FROM schedules WHERE schedule_id = ANY(%s)", (ids,))
    by_id = {r["schedule_id"]: r for r in rows}
    return [by_id[i] for i in ids]


def occurrence(
    schedule: dict[str, Any], scheduled_for: datetime = BASE, attempt: int = 1
) -> OccurrenceKey:
    return OccurrenceKey(
        schedule_id=schedule["schedule_id"],
        scheduled_for=scheduled_for,
        attempt=attempt,
        trigger="schedule",
        job_id=str(schedule["schedule_id"]),
        domain=schedule["domain"],
        domain_config_id=schedule["domain_config_id"],
    )


def rows(url: str) -> list[dict[str, Any]]:
    return query(url, "SELECT * FROM job_executions ORDER BY schedule_id, scheduled_for, attempt")


def row(url: str, execution_id: UUID) -> dict[str, Any]:
    (found,) = query(url, "SELECT * FROM job_executions WHERE execution_id = %s", (execution_id,))
    return found


def schedule_row(url: str, schedule_id: UUID) -> dict[str, Any]:
    (found,) = query(url, "SELECT * FROM schedules WHERE schedule_id = %s", (schedule_id,))
    return found


def result(
    claim: Claim,
    status: str = "completed",
    *,
    fencing_token: int | None = None,
    duration: float = 0.5,
    error_message: str | None = None,
    error_details: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    scan_id: UUID | None = None,
    next_run: datetime | None = None,
) -> FinalResult:
    return FinalResult(
        execution_id=claim.execution_id,
        fencing_token=claim.fencing_token if fencing_token is None else fencing_token,
        status=status,
        duration_seconds=duration,
        error_message=error_message,
        error_details=error_details,
        metadata=metadata,
        scan_id=scan_id,
        next_run=next_run,
    )


def claimed(store: ExecutionStore, keys: list[OccurrenceKey]) -> list[Claim]:
    answers = store.claim_many([(k, uuid.uuid4()) for k in keys])
    assert all(isinstance(a, Claim) for a in answers), answers
    return answers  # type: ignore[return-value]


# -- claim_many ---------------------------------------------------------------------------------


def test_claim_many_claims_distinct_occurrences_with_fresh_fencing_tokens(
    store: ExecutionStore, database_url: str
) -> None:
    (a, b) = schedules(database_url, 2)
    keys = [occurrence(a, BASE + timedelta(minutes=i)) for i in range(3)]
    keys += [occurrence(b), occurrence(b, attempt=2)]
    requests = [(k, uuid.uuid4()) for k in keys]

    answers = store.claim_many(requests)

    assert len(answers) == 5
    for (_key, execution_id), answer in zip(requests, answers, strict=True):
        assert isinstance(answer, Claim)
        assert answer.execution_id == execution_id
        assert answer.started_at.tzinfo is not None
    tokens = [a.fencing_token for a in answers if isinstance(a, Claim)]
    assert len(set(tokens)) == 5
    found = rows(database_url)
    assert len(found) == 5
    by_id = {r["execution_id"]: r for r in found}
    for (key, execution_id), answer in zip(requests, answers, strict=True):
        r = by_id[execution_id]
        assert r["status"] == "running" and r["instance_id"] == INSTANCE
        assert isinstance(answer, Claim) and r["fencing_token"] == answer.fencing_token
        assert (r["schedule_id"], r["scheduled_for"], r["attempt"]) == (
            key.schedule_id,
            key.scheduled_for,
            key.attempt,
        )
        assert r["trigger"] == "schedule" and r["job_id"] == key.job_id
        assert r["domain_config_id"] == key.domain_config_id
    # The numbers only grow: a later batch gets larger ones.
    later = claimed(store, [occurrence(a, BASE + timedelta(hours=1))])
    assert later[0].fencing_token > max(tokens)


def test_two_requests_for_one_occurrence_in_a_batch_give_one_claim(
    store: ExecutionStore, database_url: str
) -> None:
    (s,) = schedules(database_url, 1)
    first, second = uuid.uuid4(), uuid.uuid4()
    other = occurrence(s, BASE + timedelta(minutes=5))
    answers = store.claim_many(
        [(occurrence(s), first), (occurrence(s), second), (other, uuid.uuid4())]
    )
    assert isinstance(answers[0], Claim) and answers[0].execution_id == first
    assert answers[1] is None
    assert isinstance(answers[2], Claim)
    found = [r for r in rows(database_url) if r["scheduled_for"] == BASE]
    assert [r["execution_id"] for r in found] == [first]


def test_an_occurrence_with_a_completed_row_is_not_claimed_again(
    store: ExecutionStore, database_url: str
) -> None:
    (s, t) = schedules(database_url, 2)
    (done,) = claimed(store, [occurrence(s)])
    assert store.finish_many([result(done)]) == [(True, True)]
    before = row(database_url, done.execution_id)
    assert before["status"] == "completed"

    answers = store.claim_many([(occurrence(s), uuid.uuid4()), (occurrence(t), uuid.uuid4())])

    assert answers[0] is None
    assert isinstance(answers[1], Claim)
    assert row(database_url, done.execution_id) == before
    assert len([r for r in rows(database_url) if r["schedule_id"] == s["schedule_id"]]) == 1


def test_a_skipped_occurrence_is_taken_over_by_a_claim(
    store: ExecutionStore, database_url: str
) -> None:
    (s,) = schedules(database_url, 1)
    assert store.record_skipped(occurrence(s), "Redis unreachable", {"reason": "redis"})
    (skipped,) = rows(database_url)
    assert skipped["status"] == "skipped"
    new_id = uuid.uuid4()

    answers = store.claim_many([(occurrence(s), new_id), (occurrence(s, attempt=2), uuid.uuid4())])

    assert isinstance(answers[0], Claim) and answers[0].execution_id == new_id
    assert isinstance(answers[1], Claim)
    taken = row(database_url, new_id)
    assert taken["status"] == "running"
    assert taken["fencing_token"] == answers[0].fencing_token
    assert taken["error_details"] == {"took_over_skipped": "Redis unreachable"}
    assert taken["error_message"] is None and taken["completed_at"] is None
    assert len(rows(database_url)) == 2  # taken over, not a second row


def test_a_request_the_database_refuses_fails_alone(
    store: ExecutionStore, database_url: str
) -> None:
    (s, t) = schedules(database_url, 2)
    ghost = dict(s, schedule_id=uuid.uuid4())  # no such schedule: foreign key violation
    requests = [
        (occurrence(s), uuid.uuid4()),
        (occurrence(ghost), uuid.uuid4()),
        (occurrence(t), uuid.uuid4()),
    ]

    answers = store.claim_many(requests)

    assert isinstance(answers[0], Claim) and answers[0].execution_id == requests[0][1]
    assert isinstance(answers[1], DatabaseError)
    assert answers[1].sqlstate == "23503"
    assert answers[1].constraint == "job_executions_schedule_id_fkey"
    assert isinstance(answers[2], Claim) and answers[2].execution_id == requests[2][1]
    assert {r["execution_id"] for r in rows(database_url)} == {requests[0][1], requests[2][1]}
    assert not store.database_down


def test_a_resent_batch_gets_back_its_own_claims(store: ExecutionStore, database_url: str) -> None:
    (s, t) = schedules(database_url, 2)
    requests = [(occurrence(s), uuid.uuid4()), (occurrence(t), uuid.uuid4())]
    first = store.claim_many(requests)
    assert all(isinstance(a, Claim) for a in first)

    again = store.claim_many(requests)  # the answer was lost: the same batch sent again

    assert again == first
    assert len(rows(database_url)) == 2
    # Someone else's request for those occurrences still gets nothing.
    assert store.claim_many([(occurrence(s), uuid.uuid4()), (occurrence(t), uuid.uuid4())]) == [
        None,
        None,
    ]


def test_a_skip_under_our_lost_claims_id_takes_over_that_running_row_and_no_other(
    store: ExecutionStore, database_url: str
) -> None:
    # A claim committed, but its answer was lost with the connection (a failover mid-commit):
    # the occurrence was then skipped (beyond its grace, or coalesced) under the claim's id.
    (s, t) = schedules(database_url, 2)
    (lost,) = claimed(store, [occurrence(s)])
    (other,) = claimed(store, [occurrence(t)])

    assert store.record_skipped(
        occurrence(s), "missed by 400s", {"reason": "late"}, execution_id=lost.execution_id
    )
    assert not store.record_skipped(occurrence(t), "missed", {"reason": "late"})

    taken = row(database_url, lost.execution_id)
    assert taken["status"] == "skipped"
    assert taken["error_message"] == "missed by 400s"
    assert taken["error_details"] == {"reason": "late"}
    assert taken["completed_at"] is not None
    assert row(database_url, other.execution_id)["status"] == "running"  # another run's: kept
    assert len(rows(database_url)) == 2


# -- finish_many --------------------------------------------------------------------------------


def test_finish_many_writes_every_row_and_its_schedule(
    store: ExecutionStore, database_url: str
) -> None:
    trio = schedules(database_url, 3)
    claims = claimed(store, [occurrence(s) for s in trio])
    scan = uuid.uuid4()
    next_run = BASE + timedelta(hours=1)
    results = [
        result(claims[0], duration=1.25, metadata={"pages": 3}, scan_id=scan, next_run=next_run),
        result(
            claims[1],
            "failed",
            duration=0.5,
            error_message="upstream said 500",
            error_details={"http_status": 500},
            next_run=next_run,
        ),
        result(claims[2], "timed_out", duration=9.0, error_message="too slow", next_run=None),
    ]

    assert store.finish_many(results) == [(True, True)] * 3

    for s, c, r in zip(trio, claims, results, strict=True):
        written = row(database_url, c.execution_id)
        assert written["status"] == r.status
        assert written["duration_seconds"] == pytest.approx(r.duration_seconds)
        assert written["completed_at"] is not None
        assert written["error_message"] == r.error_message
        assert written["error_details"] == r.error_details
        assert written["metadata"] == r.metadata
        assert written["fencing_token"] == c.fencing_token
        sched = schedule_row(database_url, s["schedule_id"])
        assert sched["last_status"] == r.status
        assert sched["last_error"] == r.error_message
        assert sched["last_run"] == written["started_at"]
        assert sched["last_fencing_token"] == c.fencing_token
        assert sched["next_run"] == r.next_run
    assert row(database_url, claims[0].execution_id)["scan_id"] == scan


def test_two_runs_of_one_schedule_in_one_batch_the_newer_fencing_token_wins(
    store: ExecutionStore, database_url: str
) -> None:
    (s,) = schedules(database_url, 1)
    older, newer = claimed(store, [occurrence(s), occurrence(s, BASE + timedelta(minutes=1))])
    assert newer.fencing_token > older.fencing_token

    # The newer first in the list: order in the batch must not matter.
    answers = store.finish_many(
        [result(newer, "completed"), result(older, "failed", error_message="old one failed")]
    )

    assert answers == [(True, True), (True, False)]
    assert row(database_url, older.execution_id)["status"] == "failed"
    assert row(database_url, newer.execution_id)["status"] == "completed"
    sched = schedule_row(database_url, s["schedule_id"])
    assert sched["last_fencing_token"] == newer.fencing_token
    assert sched["last_status"] == "completed" and sched["last_error"] is None
    assert sched["last_run"] == row(database_url, newer.execution_id)["started_at"]


def test_a_result_with_a_stale_fencing_token_is_not_written(
    store: ExecutionStore, database_url: str
) -> None:
    (s, t) = schedules(database_url, 2)
    mine, other = claimed(store, [occurrence(s), occurrence(t)])

    answers = store.finish_many(
        [result(mine, fencing_token=mine.fencing_token - 1_000), result(other)]
    )

    assert answers == [(False, False), (True, True)]
    stale = row(database_url, mine.execution_id)
    assert stale["status"] == "running" and stale["completed_at"] is None
    sched = schedule_row(database_url, s["schedule_id"])
    assert sched["last_status"] is None and sched["last_fencing_token"] is None
    assert row(database_url, other.execution_id)["status"] == "completed"
    # A result for an execution that does not exist at all: not written either.
    ghost = Claim(uuid.uuid4(), mine.fencing_token, mine.started_at)
    assert store.finish_many([result(ghost), result(ghost)]) == [(False, False)] * 2


def test_finish_many_while_postgres_is_believed_down_defers_and_flush_writes_later(
    store: ExecutionStore, database_url: str
) -> None:
    trio = schedules(database_url, 3)
    claims = claimed(store, [occurrence(s) for s in trio])
    counts: list[int] = []
    store.on_pending_change = counts.append
    store._mark_down()
    assert store.database_down

    answers = store.finish_many([result(c, metadata={"n": i}) for i, c in enumerate(claims)])

    assert answers == [(True, True)] * 3  # assumed: the write happens later
    assert store.pending_count == 3
    assert counts == [1, 2, 3]
    assert all(row(database_url, c.execution_id)["status"] == "running" for c in claims)

    assert store.flush_pending() == 3

    assert store.pending_count == 0
    assert not store.database_down
    for i, (s, c) in enumerate(zip(trio, claims, strict=True)):
        written = row(database_url, c.execution_id)
        assert written["status"] == "completed" and written["metadata"] == {"n": i}
        assert schedule_row(database_url, s["schedule_id"])["last_fencing_token"] == c.fencing_token
    assert counts[-1] == 0


def test_a_result_the_database_refuses_is_reported_unwritten_and_the_others_are_written(
    store: ExecutionStore, database_url: str
) -> None:
    (s, t) = schedules(database_url, 2)
    good, bad = claimed(store, [occurrence(s), occurrence(t)])

    answers = store.finish_many([result(good), result(bad, "no-such-status")])

    assert answers == [(True, True), (False, False)]
    assert row(database_url, good.execution_id)["status"] == "completed"
    assert row(database_url, bad.execution_id)["status"] == "running"
    assert store.pending_count == 0 and not store.database_down


def test_finish_many_defers_a_result_when_postgres_is_lost_during_the_one_by_one_retry(
    store: ExecutionStore,
    db: DatabaseConnection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch is refused (one bad result), and PostgreSQL drops the store's connections
    before the results are retried one by one: the good result hits an unreachable server and
    must wait for it (deferred), not be reported refused and forgotten."""
    (s, t) = schedules(database_url, 2)
    good, bad = claimed(store, [occurrence(s), occurrence(t)])
    real_fetch_all = db.fetch_all
    statements: list[str] = []

    def fetch_all_then_lose_connections(query_text: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(query_text)
        try:
            return real_fetch_all(query_text, *args, **kwargs)
        finally:
            if len(statements) == 1:  # after the batch: every pooled connection is cut
                query(
                    database_url,
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )

    monkeypatch.setattr(db, "fetch_all", fetch_all_then_lose_connections)

    answers = store.finish_many([result(good, metadata={"kept": True}), result(bad, "nope")])

    assert len(statements) >= 2, "the refused batch was not retried one by one"
    monkeypatch.setattr(db, "fetch_all", real_fetch_all)
    # Whatever it answered, the good result must not be lost: written later by the flush
    # (retried: the pool may still hand out a cut connection or two).
    deadline = time.monotonic() + 5.0
    while store.pending_count and time.monotonic() < deadline:
        store.flush_pending()
        time.sleep(0.05)
    written = row(database_url, good.execution_id)
    assert (written["status"], written["metadata"], store.pending_count, answers[0]) == (
        "completed",
        {"kept": True},
        0,
        (True, True),
    ), f"good result lost: finish_many answered {answers}, row is {written['status']}"
    assert row(database_url, bad.execution_id)["status"] == "running"
