"""API sync: schedules from an external HTTP API into PostgreSQL, all or nothing.

One sync: fetch every page → parse and validate every item → diff against the `source='api'`
rows → apply in ONE transaction. Nothing is written unless the whole answer was fetched and
parsed; a failure raises `ApiSyncError`, whose `case` (see CASES) names what went wrong.
Fetching: `Authorization: Bearer API_TOKEN` (only to API_URL's origin), REQUEST_TIMEOUT, at most
MAX_RESPONSE_BYTES for all pages together (refused on Content-Length, else cut while streaming),
MAX_ATTEMPTS tries per page with doubling backoff on connection errors, time-outs, broken
bodies, 408, 429 and 5xx; pagination by a top-level `next` or `links.next` URL, up to MAX_PAGES.

Mapping of one item (seed 001, "API Schedule Format"):

    domain_config_id         → domain_config_id; a string that is not a UUID ("abc-123")
                               becomes uuid5(EXTERNAL_ID_NAMESPACE, string), the string itself
                               kept as payload.external_id
    data.domain              → domain
    data.schedule.frequency  → frequency
    data.schedule.time       → time_config, merged with the options allowed beside frequency
                               (timezone, jitter, start_date, end_date, timeout_seconds,
                               max_retries, misfire_grace_time)
    data.job_type            → job_type (optional; absent = NULL = DEFAULT_JOB_TYPE)
    data.enabled             → enabled (optional, default true)
    every other key of data  → payload (maxPages, scanDepth, customPages, description, ...)

Decisions:
- The API owns its rows: an item in the answer makes its row match it, `enabled` included. So a
  row disabled because its item went missing is re-enabled when the item comes back, and an api
  row disabled by hand is re-enabled by the next sync; to stop one, have the API send
  `"enabled": false`, or detach the row (`source = 'manual'`). `name` and `profile_id` are not
  the API's and are never written.
- An invalid item never changes its row, and with API_SYNC_DISABLE_MISSING it still counts as
  present (its row is not disabled). An id that occurs twice in one answer is invalid, every time.
- `ApiSyncService` runs syncs under `lock:api_sync` and leaves a marker key for
  API_SYNC_INTERVAL, so that across instances there is one attempt per interval.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import redis

from database.connection import DatabaseConnection, Row, Session
from database.queries import load_queries
from services.config import Settings
from services.errors import LockUnavailable, SchedulerError
from services.lock.keys import api_sync_lock_key
from services.lock.lock import DistributedLock
from services.log import get_logger
from services.metrics import Metrics
from services.sync.client import (
    CASES,
    MAX_ATTEMPTS,
    MAX_PAGES,
    MAX_RESPONSE_BYTES,
    ApiClient,
    ApiSyncError,
    parse_page,
    shown_url,
)
from services.sync.items import (
    EXTERNAL_ID_NAMESPACE,
    ApiItem,
    InvalidItem,
    map_domain_config_id,
    parse_item,
    parse_items,
)

log = get_logger(__name__)
_SQL = load_queries("api_sync")
COUNT_KEYS = ("created", "updated", "skipped", "invalid", "disabled")
MANAGED_FIELDS = ("domain", "frequency", "time_config", "enabled", "job_type", "payload")

__all__ = [
    "CASES",
    "EXTERNAL_ID_NAMESPACE",
    "MAX_ATTEMPTS",
    "MAX_PAGES",
    "MAX_RESPONSE_BYTES",
    "ApiClient",
    "ApiItem",
    "ApiSync",
    "ApiSyncError",
    "ApiSyncService",
    "InvalidItem",
    "SyncResult",
    "map_domain_config_id",
    "parse_item",
    "parse_items",
    "parse_page",
    "plan_sync",
    "shown_url",
    "zero_counts",
]


# -- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    action: str  # create | update | disable
    domain_config_id: str
    domain: str
    external_id: str | None = None
    schedule_id: str | None = None
    fields: tuple[str, ...] = ()  # for an update: the columns that change

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fields": list(self.fields)}


@dataclass(frozen=True)
class Plan:
    creates: list[ApiItem]
    updates: list[tuple[UUID, ApiItem]]  # (schedule_id, item)
    disables: list[UUID]  # schedule_ids
    unchanged: int
    changes: list[Change]


def plan_sync(
    items: Iterable[ApiItem],
    differing: Iterable[Mapping[str, Any]],
    missing: Iterable[Mapping[str, Any]] = (),
) -> Plan:
    """The plan from the database's diff: `differing` rows (diff_api_rows: an item's id, its
    row's schedule_id or None when new, one boolean per managed column) and `missing` rows
    (missing_api_rows). Items not in `differing` are unchanged."""
    by_id = {item.domain_config_id: item for item in items}
    creates: list[ApiItem] = []
    updates: list[tuple[UUID, ApiItem]] = []
    changes: list[Change] = []
    for row in differing:
        item = by_id[row["domain_config_id"]]
        key, domain = str(item.domain_config_id), item.config["domain"]
        external = item.config["payload"].get("external_id")
        if row["schedule_id"] is None:
            creates.append(item)
            changes.append(Change("create", key, domain, external))
        else:
            changed = tuple(name for name in MANAGED_FIELDS if row[name])
            updates.append((row["schedule_id"], item))
            changes.append(
                Change("update", key, domain, external, str(row["schedule_id"]), changed)
            )
    disables: list[UUID] = []
    for row in missing:
        disables.append(row["schedule_id"])
        changes.append(
            Change(
                "disable",
                str(row["domain_config_id"]),
                row["domain"],
                row["external_id"],
                str(row["schedule_id"]),
            )
        )
    unchanged = len(by_id) - len(creates) - len(updates)
    return Plan(creates, updates, disables, unchanged, changes)


# -- the sync ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    counts: dict[str, int]
    invalid_items: list[tuple[str | None, str]]  # (domain_config_id as sent, reason)
    changes: list[Change]
    dry_run: bool = False
    pages: int = 0
    items: int = 0  # items received, valid or not
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what `sync --json` prints."""
        document = asdict(self)
        del document["invalid_items"]
        document["invalid"] = [
            {"domain_config_id": given, "reason": reason} for given, reason in self.invalid_items
        ]
        document["changes"] = [change.to_dict() for change in self.changes]
        return document


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


def _row_json(item: ApiItem, schedule_id: UUID | None = None) -> dict[str, Any]:
    row = {name: item.config[name] for name in MANAGED_FIELDS}
    row["domain_config_id"] = str(item.domain_config_id)
    if schedule_id is not None:
        row["schedule_id"] = str(schedule_id)
    return row


class ApiSync:
    """Fetch + parse + plan + apply. Not locked: ApiSyncService decides who runs it."""

    def __init__(
        self,
        db: DatabaseConnection,
        client: ApiClient,
        *,
        disable_missing: bool = False,
        default_timezone: str = "UTC",
    ) -> None:
        self.db = db
        self.client = client
        self.disable_missing = disable_missing
        self.default_timezone = default_timezone

    @classmethod
    def from_settings(
        cls,
        db: DatabaseConnection,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        **client_options: Any,
    ) -> ApiSync:
        if not settings.api_url:
            raise ApiSyncError("not_configured", "API_URL is not set: there is nothing to sync")
        client = ApiClient(
            settings.api_url,
            token=settings.api_token,
            timeout=settings.request_timeout,
            stop=stop,
            **client_options,
        )
        return cls(
            db,
            client,
            disable_missing=settings.api_sync_disable_missing,
            default_timezone=settings.scheduler_timezone,
        )

    def sync(self, dry_run: bool = False) -> SyncResult:
        """Make the api rows match the API's answer; with dry_run, only say what would change."""
        started = time.monotonic()
        raws, pages = self.client.fetch_items()
        items, invalid = parse_items(raws, default_timezone=self.default_timezone)
        for bad in invalid:
            log.warning(
                "api_sync.invalid_item", domain_config_id=bad.domain_config_id, reason=bad.reason
            )
        present = [item.domain_config_id for item in items]
        present += [bad.mapped_id for bad in invalid if bad.mapped_id is not None]
        if dry_run:
            with self.db.session() as session:
                plan = self._plan(session, items, present)
        else:
            with self.db.transaction() as tx:
                tx.execute(_SQL["lock_api_sync"])
                plan = self._plan(tx, items, present)
                self._apply(tx, plan)
        counts = {
            "created": len(plan.creates),
            "updated": len(plan.updates),
            "skipped": plan.unchanged,
            "invalid": len(invalid),
            "disabled": len(plan.disables),
        }
        if self.disable_missing and not raws:
            log.warning("api_sync.empty_answer", disabled=counts["disabled"])
        result = SyncResult(
            counts,
            [(bad.domain_config_id, bad.reason) for bad in invalid],
            plan.changes,
            dry_run,
            pages,
            len(raws),
            round(time.monotonic() - started, 3),
        )
        log.info(
            "api_sync.dry_run" if dry_run else "api_sync.completed",
            **counts,
            pages=pages,
            items=len(raws),
            duration_s=result.duration_s,
        )
        return result

    def _plan(self, session: Session, items: list[ApiItem], present: list[UUID]) -> Plan:
        # PostgreSQL compares: jsonb equality (1 = 1.0, true <> 1), and only differences
        # travel back, so an unchanged re-sync reads almost nothing.
        incoming = json.dumps([_row_json(item) for item in items])
        differing = session.fetch_all(_SQL["diff_api_rows"], {"rows": incoming})
        missing: list[Row] = []
        if self.disable_missing:
            missing = session.fetch_all(_SQL["missing_api_rows"], {"present": present})
        return plan_sync(items, differing, missing)

    def _apply(self, tx: Session, plan: Plan) -> None:
        # Whole batches as one JSON parameter: one statement each, whatever the count.
        if plan.creates:
            rows = [_row_json(item) for item in plan.creates]
            tx.execute(_SQL["insert_api_rows"], {"rows": json.dumps(rows)})
        if plan.updates:
            rows = [_row_json(item, schedule_id) for schedule_id, item in plan.updates]
            tx.execute(_SQL["update_api_rows"], {"rows": json.dumps(rows)})
        if plan.disables:
            tx.execute(_SQL["disable_api_rows"], {"schedule_ids": plan.disables})


# -- one instance at a time -------------------------------------------------------------------


def last_sync_key(prefix: str = "") -> str:
    return f"{prefix}scheduler:api_sync:last"


class ApiSyncService:
    """Runs ApiSync under `lock:api_sync` with metrics and the last result for `status`.

    After each attempt (success or failure) a marker key lives for a little less than the
    interval; a periodic step that finds it skips, so instances whose timers are out of phase
    still make one attempt per interval between them. Manual syncs ignore the marker.
    """

    def __init__(
        self,
        db: DatabaseConnection,
        redis_client: redis.Redis,
        settings: Settings,
        metrics: Metrics,
        *,
        interval: float | None = None,
        stop: threading.Event | None = None,
        **client_options: Any,
    ) -> None:
        self.db = db
        self.redis = redis_client
        self.settings = settings
        self.metrics = metrics
        self.interval = interval or settings.api_sync_interval
        self.stop = stop
        self.client_options = client_options
        self.last: dict[str, Any] | None = None

    def run(self, *, periodic: bool = False, lock_wait: float = 0.0) -> SyncResult | None:
        """One locked sync; None when skipped (another instance holds the lock, or with
        `periodic`, synced within the interval). Raises ApiSyncError, or LockUnavailable when
        Redis cannot be asked (never syncs unlocked)."""
        sync = ApiSync.from_settings(self.db, self.settings, stop=self.stop, **self.client_options)
        key = api_sync_lock_key(self.settings.redis_key_prefix)
        lock = DistributedLock(
            self.redis, key, self.settings.lock_timeout, self.settings.instance_id
        )
        try:
            taken = lock.acquire(wait=lock_wait)
        except LockUnavailable:
            self._count("skipped_no_redis")
            raise
        if not taken:
            self._count("skipped_locked")
            log.info("api_sync.skipped", reason="another instance is syncing", key=key)
            return None
        try:
            if periodic and self._synced_recently():
                self._count("skipped_recent")
                log.debug("api_sync.skipped", reason="synced within the interval")
                return None
            return self._run_recorded(sync, periodic=periodic)
        finally:
            lock.release()

    def step(self) -> None:
        """The periodic side loop's step: failures are logged and counted, never raised."""
        try:
            self.run(periodic=True)
        except LockUnavailable as exc:
            log.warning("api_sync.skipped", reason=str(exc))
        except SchedulerError:
            pass  # logged and counted by _run_recorded

    def _run_recorded(self, sync: ApiSync, *, periodic: bool) -> SyncResult:
        started = time.monotonic()
        try:
            result = sync.sync()
        except SchedulerError as exc:  # ApiSyncError, or the database failing mid-apply
            case = exc.case if isinstance(exc, ApiSyncError) else "database"
            self._count("failed")
            self._remember("failed", None, started, error=str(exc), case=case)
            # A manual caller gets the exception and reports it; only the side loop logs it.
            (log.error if periodic else log.info)("api_sync.failed", case=case, error=str(exc))
            raise
        finally:
            self._mark_synced()
        self._count("success")
        self._remember("success", result.counts, started)
        return result

    def _synced_recently(self) -> bool:
        try:
            return bool(self.redis.exists(last_sync_key(self.settings.redis_key_prefix)))
        except redis.RedisError:
            return False  # we hold the lock: syncing once too often is harmless

    def _mark_synced(self) -> None:
        # A little under the interval, so this instance's own next step finds it expired.
        ttl = self.interval - min(1.0, self.interval * 0.1)
        try:
            self.redis.set(
                last_sync_key(self.settings.redis_key_prefix),
                self.settings.instance_id,
                px=max(1, int(ttl * 1000)),
            )
        except redis.RedisError as exc:
            log.warning("api_sync.marker_failed", error=str(exc))

    def _count(self, result: str) -> None:
        self.metrics.api_sync.labels(result=result).inc()

    def _remember(
        self,
        result: str,
        counts: dict[str, int] | None,
        started: float,
        *,
        error: str | None = None,
        case: str | None = None,
    ) -> None:
        self.last = {
            "finished_at": datetime.now(UTC).isoformat(),
            "result": result,
            "counts": counts,
            "duration_s": round(time.monotonic() - started, 3),
            "error": error,
            "case": case,
        }

    def status(self) -> dict[str, Any] | None:
        """This instance's last sync attempt, or None before the first."""
        return None if self.last is None else dict(self.last)
