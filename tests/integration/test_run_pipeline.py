"""RunPipeline inside a real, started EnhancedScheduler (this test's database and Redis prefix):
occurrences submitted straight to `daemon.pipeline`, a registered python handler recording what
it was called with."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import redis
from psycopg.types.json import Jsonb

from services.config import load_settings
from services.engine.handlers import JobContext, register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from services.errors import DatabaseUnavailable
from services.model.occurrence import Claim, LoadedSchedule, Occurrence, OccurrenceKey
from services.model.records import Schedule
from tests.support.schedules import query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

WORKERS = 3


class Handler:
    """A python handler that records its calls and how many ran at once.

    `rendezvous` calls wait (bounded) until WORKERS handlers run together; while `gate` is
    clear, every call waits for it (or for its cancel event) before returning.
    """

    def __init__(self, *, rendezvous: int = 0, work_s: float = 0.005) -> None:
        self.lock = threading.Lock()
        self.calls: list[UUID] = []
        self.running = 0
        self.peak = 0
        self.rendezvous = rendezvous
        self.work_s = work_s
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, ctx: JobContext) -> dict[str, Any]:
        with self.lock:
            self.calls.append(ctx.schedule_id)
            self.running += 1
            self.peak = max(self.peak, self.running)
            early = len(self.calls) <= self.rendezvous
        try:
            if early:
                deadline = time.monotonic() + 3.0
                while self.running < WORKERS and time.monotonic() < deadline:
                    time.sleep(0.002)
            while not self.gate.wait(0.01):
                if ctx.cancel_event.is_set():
                    return {"cancelled": True}
            if ctx.payload.get("fail"):
                raise ValueError(f"handler broke on {ctx.schedule_id}")
            time.sleep(self.work_s)
            return {"schedule": str(ctx.schedule_id)}
        finally:
            with self.lock:
                self.running -= 1

    def called(self) -> Counter[UUID]:
        with self.lock:
            return Counter(self.calls)


class Done:
    """done callbacks, counted per label."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def callback(self, label: str) -> Callable[[], None]:
        def done() -> None:
            with self.lock:
                self.counts[label] += 1

        return done

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


@pytest.fixture
def handler_name() -> str:
    return f"pipeline-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def handler(handler_name: str) -> Iterator[Handler]:
    h = Handler()
    register_python_handler(handler_name, h)
    yield h
    h.gate.set()  # never leave a worker thread blocked


@pytest.fixture
def daemon(env: dict[str, str], handler: Handler) -> Iterator[EnhancedScheduler]:
    settings = load_settings(
        {
            **env,
            "MAX_WORKERS": str(WORKERS),
            "INSTANCE_ID": "pipeline-test",
            "SHUTDOWN_TIMEOUT": "1",
            "SCHEDULE_CHECK_INTERVAL": "30",
        }
    )
    instance = EnhancedScheduler(settings=settings)
    try:
        instance.start()
        yield instance
    finally:
        handler.gate.set()
        instance.shutdown()


def insert_schedules(
    url: str,
    n: int,
    callable_name: str,
    payload: dict[str, Any] | None = None,
    time_config: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`n` disabled python schedules: the daemon never fires them itself, the test does."""
    return query(
        url,
        """
        INSERT INTO schedules (domain_config_id, domain, frequency, time_config, enabled,
                               job_type, payload)
        SELECT gen_random_uuid(), 'example.com', 'interval', %s, false, 'python', %s
        FROM generate_series(1, %s)
        RETURNING *
        """,
        (
            Jsonb({"seconds": 3600, **(time_config or {})}),
            Jsonb({"callable": callable_name, **(payload or {})}),
            n,
        ),
    )


def loaded(daemon: EnhancedScheduler, rows: Sequence[dict[str, Any]]) -> list[LoadedSchedule]:
    return [daemon.loader.parse(Schedule.from_row(row)) for row in rows]


def due_now(schedule: LoadedSchedule, moment: datetime | None = None) -> Occurrence:
    moment = moment or datetime.now(UTC).replace(microsecond=0)
    return Occurrence(schedule, moment, moment, job_id=str(schedule.schedule_id))


def executions(url: str) -> list[dict[str, Any]]:
    return query(url, "SELECT * FROM job_executions ORDER BY schedule_id, scheduled_for")


class ClaimCounter:
    """Wraps the store's claim entry points: one entry per claim statement, with its size."""

    def __init__(self, daemon: EnhancedScheduler, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.sizes: list[int] = []
        self.schedules: list[UUID] = []
        store = daemon.store
        claim_many = store.claim_many

        def counted_claim_many(
            requests: Sequence[tuple[OccurrenceKey, UUID]],
        ) -> list[Claim | BaseException | None]:
            self._record([key for key, _ in requests])
            return claim_many(requests)

        monkeypatch.setattr(store, "claim_many", counted_claim_many)

    def _record(self, keys: Sequence[OccurrenceKey]) -> None:
        with self.lock:
            self.sizes.append(len(keys))
            self.schedules.extend(k.schedule_id for k in keys)


def submit_together(
    daemon: EnhancedScheduler,
    items: Sequence[tuple[Occurrence, Callable[[], None], tuple[str, str] | None]],
) -> None:
    """Queue every item before the starter thread may look at the queue (white box: its
    condition's lock is reentrant), as when many occurrences fall due at the same moment."""
    with daemon.pipeline._wake:
        for occ, done, skip in items:
            daemon.pipeline.submit(occ, done, skip=skip)


# -- many due together -------------------------------------------------------------------------


def test_sixty_occurrences_due_together_each_run_once_in_batches_never_beyond_max_workers(
    daemon: EnhancedScheduler,
    handler: Handler,
    handler_name: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler.rendezvous = WORKERS  # the first handlers wait until all workers are busy
    handler.work_s = 0.01
    claims = ClaimCounter(daemon, monkeypatch)
    schedules = loaded(daemon, insert_schedules(database_url, 60, handler_name))
    done = Done()
    submit_together(
        daemon, [(due_now(s), done.callback(str(s.schedule_id)), None) for s in schedules]
    )

    wait_until(lambda: sum(done.snapshot().values()) >= 60, 20, 0.02, "60 done callbacks")
    wanted = {str(s.schedule_id) for s in schedules}
    rows = executions(database_url)
    assert len(rows) == 60
    assert Counter(str(r["schedule_id"]) for r in rows) == Counter(dict.fromkeys(wanted, 1))
    assert {r["status"] for r in rows} == {"completed"}
    assert all(r["metadata"] == {"schedule": str(r["schedule_id"])} for r in rows)
    assert handler.called() == Counter({s.schedule_id: 1 for s in schedules})
    assert handler.peak == WORKERS, f"{handler.peak} handlers at once, MAX_WORKERS={WORKERS}"
    # Claims went to PostgreSQL in batches: fewer statements than occurrences, each once.
    assert sum(claims.sizes) == 60 and sorted(map(str, claims.schedules)) == sorted(wanted)
    assert len(claims.sizes) < 60, claims.sizes
    assert claims.sizes[0] == 2 * WORKERS  # the first batch: as many as there are slots
    assert max(claims.sizes) <= 2 * WORKERS
    time.sleep(0.1)  # a second call of any done callback would show now
    assert done.snapshot() == Counter(dict.fromkeys(wanted, 1))
    assert daemon.pipeline.queued() == 0


def test_a_skip_item_is_recorded_skipped_and_its_handler_never_runs(
    daemon: EnhancedScheduler, handler: Handler, handler_name: str, database_url: str
) -> None:
    skipped, ran = loaded(daemon, insert_schedules(database_url, 2, handler_name))
    done = Done()
    submit_together(
        daemon,
        [
            (due_now(skipped), done.callback("skip"), ("reason text", "coalesced")),
            (due_now(ran), done.callback("run"), None),
        ],
    )
    wait_until(lambda: done.snapshot() == Counter(skip=1, run=1), 10, 0.02, "both done")
    rows = {r["schedule_id"]: r for r in executions(database_url)}
    assert len(rows) == 2
    row = rows[skipped.schedule_id]
    assert row["status"] == "skipped"
    assert row["error_message"] == "reason text"
    assert row["error_details"] == {"reason": "coalesced"}
    assert row["fencing_token"] is None
    assert rows[ran.schedule_id]["status"] == "completed"
    assert handler.called() == Counter({ran.schedule_id: 1})


def test_a_handler_that_raises_gives_a_failed_row_and_later_occurrences_still_run(
    daemon: EnhancedScheduler, handler: Handler, handler_name: str, database_url: str
) -> None:
    (broken,) = loaded(daemon, insert_schedules(database_url, 1, handler_name, {"fail": True}))
    fine = loaded(daemon, insert_schedules(database_url, 4, handler_name))
    done = Done()
    submit_together(
        daemon,
        [
            (due_now(broken), done.callback("broken"), None),
            *((due_now(s), done.callback(str(s.schedule_id)), None) for s in fine[:2]),
        ],
    )
    wait_until(lambda: sum(done.snapshot().values()) == 3, 10, 0.02, "first three done")
    rows = {r["schedule_id"]: r for r in executions(database_url)}
    failed = rows[broken.schedule_id]
    assert failed["status"] == "failed"
    assert failed["error_message"] == f"ValueError: handler broke on {broken.schedule_id}"
    assert failed["completed_at"] is not None
    assert all(rows[s.schedule_id]["status"] == "completed" for s in fine[:2])

    for s in fine[2:]:  # later, one at a time
        daemon.pipeline.submit(due_now(s), done.callback(str(s.schedule_id)))
    wait_until(lambda: sum(done.snapshot().values()) == 5, 10, 0.02, "later ones done")
    rows = {r["schedule_id"]: r for r in executions(database_url)}
    assert len(rows) == 5
    assert all(rows[s.schedule_id]["status"] == "completed" for s in fine)
    assert done.snapshot() == Counter({"broken": 1, **{str(s.schedule_id): 1 for s in fine}})
    # Not retryable (a plain exception): no second attempt was scheduled.
    assert [r["attempt"] for r in executions(database_url)] == [1] * 5


# -- shutdown ----------------------------------------------------------------------------------


def _fill_workers_and_queue(
    daemon: EnhancedScheduler,
    handler: Handler,
    schedules: Sequence[LoadedSchedule],
    done: Done,
    database_url: str,
) -> None:
    """WORKERS handlers blocked on the gate, WORKERS more begun (claimed) and waiting for a
    worker, the rest of `schedules` queued in the pipeline."""
    handler.gate.clear()
    for s in schedules[:WORKERS]:
        daemon.pipeline.submit(due_now(s), done.callback(str(s.schedule_id)))
    wait_until(lambda: handler.running == WORKERS, 10, 0.01, "all workers busy")
    for s in schedules[WORKERS:]:
        daemon.pipeline.submit(due_now(s), done.callback(str(s.schedule_id)))
    left = len(schedules) - 2 * WORKERS
    wait_until(
        lambda: daemon.pipeline.queued() == left and len(executions(database_url)) == 2 * WORKERS,
        10,
        0.01,
        f"{2 * WORKERS} claimed, {left} queued",
    )


def test_stop_starting_drops_queued_occurrences_unclaimed_and_calls_their_done(
    daemon: EnhancedScheduler,
    handler: Handler,
    handler_name: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims = ClaimCounter(daemon, monkeypatch)
    schedules = loaded(daemon, insert_schedules(database_url, 12, handler_name))
    done = Done()
    _fill_workers_and_queue(daemon, handler, schedules[:10], done, database_url)
    begun = {r["schedule_id"] for r in executions(database_url)}
    queued = [s for s in schedules[:10] if s.schedule_id not in begun]
    assert len(begun) == 6 and len(queued) == 4
    assert sum(done.snapshot().values()) == 0

    daemon.pipeline.stop_starting()

    assert daemon.pipeline.queued() == 0
    assert done.snapshot() == Counter({str(s.schedule_id): 1 for s in queued})
    # Submitted after the stop: dropped at once, its done called.
    for s in schedules[10:]:
        daemon.pipeline.submit(due_now(s), done.callback(str(s.schedule_id)))
    dropped = [*queued, *schedules[10:]]
    assert done.snapshot() == Counter({str(s.schedule_id): 1 for s in dropped})

    handler.gate.set()  # the begun ones finish normally
    wait_until(lambda: sum(done.snapshot().values()) == 12, 10, 0.02, "every done called")
    daemon.shutdown()

    rows = executions(database_url)
    assert {r["schedule_id"] for r in rows} == begun
    assert {r["status"] for r in rows} == {"completed"}
    assert set(claims.schedules) == begun  # the dropped ones were never claimed
    assert done.snapshot() == Counter({str(s.schedule_id): 1 for s in schedules})
    assert handler.called() == Counter(dict.fromkeys(begun, 1))


def test_shutdown_drops_the_queue_and_abandons_runs_that_stop_on_cancel(
    daemon: EnhancedScheduler,
    handler: Handler,
    handler_name: str,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    schedules = loaded(daemon, insert_schedules(database_url, 10, handler_name))
    done = Done()
    _fill_workers_and_queue(daemon, handler, schedules, done, database_url)
    begun = {r["schedule_id"] for r in executions(database_url)}

    started = time.monotonic()
    daemon.shutdown()  # handlers leave on their cancel event; the gate stays shut
    elapsed = time.monotonic() - started

    assert elapsed < 6.0, f"shutdown took {elapsed:.1f}s"
    rows = executions(database_url)
    assert {r["schedule_id"] for r in rows} == begun and len(rows) == 2 * WORKERS
    assert {r["status"] for r in rows} == {"abandoned"}
    assert done.snapshot() == Counter({str(s.schedule_id): 1 for s in schedules})
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{redis_prefix}lock:*")) == []
    finally:
        client.close()


# -- a batch that cannot be begun ----------------------------------------------------------------


def test_a_skip_that_cannot_be_recorded_does_not_lose_the_rest_of_its_batch(
    daemon: EnhancedScheduler, handler: Handler, handler_name: str, database_url: str
) -> None:
    """A schedule deleted a moment before its coalesced occurrence is recorded skipped (the
    foreign key refuses the row) must not take the other occurrences of its batch with it, nor
    the pipeline's slots: the six runs of that batch, and one submitted after it, all run."""
    gone, *others = loaded(daemon, insert_schedules(database_url, 8, handler_name))
    query(database_url, "DELETE FROM schedules WHERE schedule_id = %s", (gone.schedule_id,))
    batch, later = others[:6], others[6]
    done = Done()
    submit_together(
        daemon,
        [
            (due_now(gone), done.callback("gone"), ("coalesced", "coalesced")),
            *((due_now(s), done.callback(str(s.schedule_id)), None) for s in batch),
        ],
    )
    wait_until(lambda: daemon.pipeline.queued() == 0, 5, 0.01, "the batch taken by the starter")
    daemon.pipeline.submit(due_now(later), done.callback(str(later.schedule_id)))

    wanted = {str(s.schedule_id) for s in others}
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not wanted <= set(done.snapshot()):
        time.sleep(0.05)
    rows = {r["schedule_id"]: r for r in executions(database_url)}
    observed = {
        "done callback of the unrecordable skip": done.snapshot()["gone"],
        "runs of its batch completed": sum(
            rows.get(s.schedule_id, {}).get("status") == "completed" for s in batch
        ),
        "done callbacks of its batch": sum(done.snapshot()[str(s.schedule_id)] for s in batch),
        "later run completed": rows.get(later.schedule_id, {}).get("status") == "completed",
        "occurrences still queued": daemon.pipeline.queued(),
    }
    assert observed == {
        "done callback of the unrecordable skip": 1,
        "runs of its batch completed": 6,
        "done callbacks of its batch": 6,
        "later run completed": True,
        "occurrences still queued": 0,
    }
    assert handler.called() == Counter({s.schedule_id: 1 for s in others})


# -- a claim whose answer was lost (PostgreSQL crashed or failed over mid-commit) ---------------


class LostClaimAnswer:
    """The store's first claim statement commits, then its connection dies before the answer
    arrives (as when the primary is killed mid-commit and a synchronous standby has the row):
    the runner sees DatabaseUnavailable and parks the occurrence. PostgreSQL then answers again
    `down_for` seconds after the loss (the result writer's probe sees it)."""

    def __init__(
        self, daemon: EnhancedScheduler, monkeypatch: pytest.MonkeyPatch, down_for: float = 0.0
    ) -> None:
        self.committed: list[Claim] = []
        self.lost_at: float | None = None
        store = daemon.store
        claim_many, probe = store.claim_many, store.probe

        def commit_then_lose(
            requests: Sequence[tuple[OccurrenceKey, UUID]],
        ) -> list[Claim | BaseException | None]:
            answers = claim_many(requests)
            if self.lost_at is not None:
                return answers
            self.committed = [a for a in answers if isinstance(a, Claim)]
            self.lost_at = time.monotonic()
            store._mark_down()  # what claim_many does when its connection dies
            raise DatabaseUnavailable("PostgreSQL at test is unreachable: connection lost")

        def still_down() -> bool:
            assert self.lost_at is not None
            return time.monotonic() - self.lost_at >= down_for and probe()

        monkeypatch.setattr(store, "claim_many", commit_then_lose)
        monkeypatch.setattr(store, "probe", still_down)


def test_a_claim_whose_answer_was_lost_is_recognised_and_its_occurrence_runs_once(
    daemon: EnhancedScheduler,
    handler: Handler,
    handler_name: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lost = LostClaimAnswer(daemon, monkeypatch)
    (schedule,) = loaded(daemon, insert_schedules(database_url, 1, handler_name))
    submit_together(daemon, [(due_now(schedule), lambda: None, None)])

    wait_until(
        lambda: [r["status"] for r in executions(database_url)] == ["completed"],
        10,
        0.02,
        "the occurrence completed once PostgreSQL answered",
    )
    (row,) = executions(database_url)
    (claim,) = lost.committed
    assert row["execution_id"] == claim.execution_id  # the lost claim, taken up again
    assert row["fencing_token"] == claim.fencing_token
    assert handler.called() == Counter({schedule.schedule_id: 1})


def test_a_claim_whose_answer_was_lost_and_then_missed_its_grace_is_recorded_skipped(
    daemon: EnhancedScheduler,
    handler: Handler,
    handler_name: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grace = 1.0
    lost = LostClaimAnswer(daemon, monkeypatch, down_for=grace + 0.5)
    (schedule,) = loaded(
        daemon, insert_schedules(database_url, 1, handler_name, {}, {"misfire_grace_time": grace})
    )
    now = datetime.now(UTC)
    moment = now.replace(microsecond=0)
    submit_together(
        daemon, [(Occurrence(schedule, moment, now, job_id="lost"), lambda: None, None)]
    )

    wait_until(
        lambda: [r["status"] for r in executions(database_url)] == ["skipped"],
        10,
        0.02,
        "the lost claim's row recorded skipped (not left running)",
    )
    (row,) = executions(database_url)
    (claim,) = lost.committed
    assert row["execution_id"] == claim.execution_id
    assert (row["error_details"] or {}).get("reason") == "late", row
    assert handler.called() == Counter()
    assert timedelta(0) <= row["completed_at"] - row["started_at"]
