"""The exceptions of the scheduler: one base class, small subclasses a user can act on."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class of every error the scheduler raises on purpose."""


class ConfigurationError(SchedulerError):
    """A setting is missing or malformed; the message names the variable and what it accepts."""


class DatabaseUnavailable(SchedulerError):
    """PostgreSQL is unreachable; the message names host, port and database, never the password."""


class DatabaseError(SchedulerError):
    """A statement failed; keeps the violated constraint's name when there is one."""

    def __init__(self, message: str, *, constraint: str | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.constraint = constraint
        self.sqlstate = sqlstate


class InvalidScheduleError(SchedulerError):
    """A schedule's frequency/time_config (or another field) does not validate."""

    def __init__(
        self,
        reason: str,
        *,
        schedule_id: object | None = None,
        problems: list[str] | None = None,
    ):
        super().__init__(reason if schedule_id is None else f"schedule {schedule_id}: {reason}")
        self.reason = reason
        self.schedule_id = schedule_id
        # Each problem on its own (reason is them joined by "; "), for per-field API errors.
        self.problems = problems or [reason]


class ScheduleNotFound(SchedulerError):
    def __init__(self, schedule_id: object):
        super().__init__(f"no schedule with id {schedule_id}")
        self.schedule_id = schedule_id


class InvalidBackfill(SchedulerError):
    """A backfill request that cannot be served (a bad range, too many occurrences, ...)."""

    def __init__(self, reason: str, field: str = "from") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class ExecutionNotFound(SchedulerError):
    def __init__(self, execution_id: object):
        super().__init__(f"no execution with id {execution_id}")
        self.execution_id = execution_id


class LockUnavailable(SchedulerError):
    """Redis could not be reached to take or check a lock: the run is skipped, never unlocked."""


class MigrationError(SchedulerError):
    """A migration file is malformed, was edited after it was applied, or failed to apply."""


class ApiSyncError(SchedulerError):
    """The API's answer could not be read as a whole; nothing was changed.

    `case` names what went wrong (one of `services.sync.client.CASES`: unreachable, timeout,
    http_status, ...); `status` is the HTTP status when there was one.
    """

    def __init__(self, case: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.case = case
        self.status = status


class StartupError(SchedulerError):
    """The daemon cannot start; the message says what to fix."""


class LockNotAcquired(SchedulerError):
    """The lock is held by someone else (raised by ``with DistributedLock(...)``)."""

    def __init__(self, key: str, holder: str | None = None):
        who = f"held by {holder}" if holder else "held by another holder"
        super().__init__(f"lock {key} is {who}")
        self.key = key
        self.holder = holder


class UnknownJobType(SchedulerError):
    def __init__(self, job_type: str, accepted: tuple[str, ...]):
        super().__init__(
            f"unknown job type {job_type!r} (accepted: {', '.join(accepted) or 'none'})"
        )
        self.job_type = job_type
        self.accepted = accepted


class RetryableError(Exception):
    """Raised by a python handler callable to say "this failed, but trying again may work"."""


class BodyDeadline(Exception):
    """The response body took longer than the run's HTTP time limit."""


class RetryablePage(Exception):
    """A page fetch that may succeed when tried again (the sync client retries it)."""

    def __init__(self, error: ApiSyncError) -> None:
        super().__init__(str(error))
        self.error = error


class SkipOccurrence(Exception):
    """An occurrence that cannot run now, with the reason and kind its skipped row gets."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class TokenExists(SchedulerError):
    def __init__(self, name: str):
        super().__init__(f"a token named {name!r} already exists (revoke it or pick another name)")
        self.name = name


class TokenNotFound(SchedulerError):
    def __init__(self, name: str):
        super().__init__(f"no token named {name!r}")
        self.name = name


class InvalidTokenRequest(SchedulerError):
    """A token's name or role is not acceptable; the message says what is."""


class InvalidPauseRequest(SchedulerError):
    """A pause without a note where one is required, or without its author; says which."""


class InvalidCursor(SchedulerError):
    def __init__(self, cursor: str):
        super().__init__(f"cursor {cursor!r} is not one this server handed out")
        self.cursor = cursor


class StaleSchedule(SchedulerError):
    """An If-Match precondition names a configuration the schedule no longer has."""

    def __init__(self, schedule_id: object, current_hash: str):
        super().__init__(
            f'schedule {schedule_id} changed since you read it (its ETag is now "{current_hash}")'
        )
        self.schedule_id = schedule_id
        self.current_hash = current_hash


class CreatorLimitReached(SchedulerError):
    """MAX_SCHEDULES_PER_CREATOR: this creator already has as many schedules as allowed."""

    def __init__(self, creator: str, limit: int, existing: int, adding: int = 1):
        super().__init__(
            f"{creator} has {existing} schedules; creating {adding} more would pass "
            f"MAX_SCHEDULES_PER_CREATOR={limit}"
        )
        self.creator = creator
        self.limit = limit


class BulkInvalid(SchedulerError):
    """Items of a bulk create that do not validate: nothing was created."""

    def __init__(self, problems: list[tuple[int, InvalidScheduleError]]):
        first_index, first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"items[{first_index}]: {first.reason}{more}; nothing was created")
        self.problems = problems


class InvalidChannel(SchedulerError):
    """A notification channel's name, kind or target is not acceptable; says what is."""


class ChannelExists(SchedulerError):
    def __init__(self, name: str):
        super().__init__(
            f"a channel named {name!r} already exists (remove it or pick another name)"
        )
        self.name = name


class ChannelNotFound(SchedulerError):
    def __init__(self, name: str):
        super().__init__(f"no notification channel named {name!r}")
        self.name = name
