"""ApiSync, one sync run: schedules from an external HTTP API into PostgreSQL, all or nothing.

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
- `ApiSyncService` (`sync/service.py`) runs syncs under `lock:api_sync` and leaves a marker key
  for API_SYNC_INTERVAL, so that across instances there is one attempt per interval.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from services.clock import SYSTEM_CLOCK, Clock
from services.config import Settings
from services.errors import ApiSyncError
from services.log import get_logger
from services.store.audit import SYNC_ACTOR
from services.store.schedule_sync import ApiRows
from services.store.schedules import ScheduleRepository
from services.sync.client import ApiClient
from services.sync.items import ApiItem, parse_items
from services.sync.plan import MANAGED_FIELDS, Change, Plan, plan_sync

__all__ = ["COUNT_KEYS", "ApiSync", "SyncResult"]

log = get_logger(__name__)
COUNT_KEYS = ("created", "updated", "skipped", "invalid", "disabled")  # SyncResult.counts


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
        schedules: ScheduleRepository,
        client: ApiClient,
        *,
        disable_missing: bool = False,
        default_timezone: str = "UTC",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.schedules = schedules
        self.client = client
        self.clock = clock
        self.disable_missing = disable_missing
        self.default_timezone = default_timezone

    @classmethod
    def from_settings(
        cls,
        schedules: ScheduleRepository,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        clock: Clock = SYSTEM_CLOCK,
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
            schedules,
            client,
            disable_missing=settings.api_sync_disable_missing,
            default_timezone=settings.scheduler_timezone,
            clock=clock,
        )

    def sync(self, dry_run: bool = False) -> SyncResult:
        """Make the api rows match the API's answer; with dry_run, only say what would change."""
        started = self.clock.monotonic()
        raws, pages = self.client.fetch_items()
        items, invalid = parse_items(raws, default_timezone=self.default_timezone)
        for bad in invalid:
            log.warning(
                "api_sync.invalid_item", domain_config_id=bad.domain_config_id, reason=bad.reason
            )
        present = [item.domain_config_id for item in items]
        present += [bad.mapped_id for bad in invalid if bad.mapped_id is not None]
        with self.schedules.api_rows(write=not dry_run, actor=SYNC_ACTOR) as rows:
            plan = self._plan(rows, items, present)
            if not dry_run:
                self._apply(rows, plan)
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
            round(self.clock.monotonic() - started, 3),
        )
        log.info(
            "api_sync.dry_run" if dry_run else "api_sync.completed",
            **counts,
            pages=pages,
            items=len(raws),
            duration_s=result.duration_s,
        )
        return result

    def _plan(self, rows: ApiRows, items: list[ApiItem], present: list[UUID]) -> Plan:
        # PostgreSQL compares (jsonb equality: 1 = 1.0, true <> 1), and only differences
        # travel back, so an unchanged re-sync reads almost nothing.
        differing = rows.differing([_row_json(item) for item in items])
        missing = rows.missing(present) if self.disable_missing else []
        return plan_sync(items, differing, missing)

    def _apply(self, rows: ApiRows, plan: Plan) -> None:
        # Whole batches: one statement each, whatever the count.
        if plan.creates:
            rows.insert([_row_json(item) for item in plan.creates])
        if plan.updates:
            rows.update([_row_json(item, schedule_id) for schedule_id, item in plan.updates])
        if plan.disables:
            rows.disable(plan.disables)
