"""retry_transient: a deadlock victim or a serialization failure is sent again; nothing else is."""

from __future__ import annotations

import pytest

from database.connection import TRANSIENT_ATTEMPTS, retry_transient
from services.errors import DatabaseError


class Flaky:
    def __init__(self, failures: list[DatabaseError]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_transient_abort_is_retried_until_it_succeeds(sqlstate: str) -> None:
    run = Flaky([DatabaseError("deadlock detected", sqlstate=sqlstate)] * 2)
    assert retry_transient(run) == "done"
    assert run.calls == 3


def test_a_transient_abort_on_every_attempt_is_raised_after_the_last() -> None:
    failures = [DatabaseError("deadlock detected", sqlstate="40P01")] * (TRANSIENT_ATTEMPTS + 1)
    run = Flaky(failures)
    with pytest.raises(DatabaseError, match="deadlock"):
        retry_transient(run)
    assert run.calls == TRANSIENT_ATTEMPTS


def test_any_other_database_error_is_raised_at_once() -> None:
    run = Flaky([DatabaseError("duplicate key", constraint="schedules_pkey", sqlstate="23505")])
    with pytest.raises(DatabaseError, match="duplicate key"):
        retry_transient(run)
    assert run.calls == 1
