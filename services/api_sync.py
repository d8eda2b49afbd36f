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
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit
from uuid import UUID, uuid5

import httpx
import redis

from database.connection import DatabaseConnection, Row, Session
from database.queries import load_queries
from services.config import Settings
from services.distributed_lock import DistributedLock, api_sync_lock_key
from services.errors import InvalidScheduleError, LockUnavailable, SchedulerError
from services.logging import get_logger
from services.metrics import Metrics
from services.models import ScheduleSource
from services.schedule_repository import validate_config
from services.time_config import COMMON_KEYS

log = get_logger(__name__)
_SQL = load_queries("api_sync")

# Fixed forever: ids already in the database depend on it.
# = uuid5(NAMESPACE_URL, "urn:enhanced-scheduler:api-sync:domain_config_id")
EXTERNAL_ID_NAMESPACE = UUID("c78870d7-d391-5e5d-9000-2235988421a9")
MAX_RESPONSE_BYTES = 50 * 1024 * 1024  # for the whole answer, every page included
MAX_PAGES = 100
MAX_ATTEMPTS = 3  # per page: the first try and two retries
BACKOFF_INITIAL_S = 0.5  # doubles after each failed try
COUNT_KEYS = ("created", "updated", "skipped", "invalid", "disabled")
MANAGED_FIELDS = ("domain", "frequency", "time_config", "enabled", "job_type", "payload")
CASES = (
    "not_configured",  # API_URL is not set
    "unreachable",  # connection refused, DNS failure, unsupported URL
    "timeout",  # no answer within REQUEST_TIMEOUT
    "http_status",  # a non-2xx answer (5xx after retries)
    "incomplete",  # the connection broke before the whole body arrived
    "too_large",  # the answer exceeds MAX_RESPONSE_BYTES
    "invalid_json",  # the body is not JSON
    "wrong_shape",  # JSON, but not {"data": [...]}, or a bad `next` link
    "too_many_pages",  # more than MAX_PAGES pages
    "cancelled",  # the daemon stopped while waiting to retry
)
_DATA_COLUMNS = frozenset({"domain", "schedule", "job_type", "enabled"})
_SCHEDULE_KEYS = frozenset({"frequency", "time", *COMMON_KEYS})
_RETRYABLE_STATUS = frozenset({408, 429})


class ApiSyncError(SchedulerError):
    """The API's answer could not be read as a whole; nothing was changed. See CASES."""

    def __init__(self, case: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.case = case
        self.status = status


class _Retryable(Exception):
    def __init__(self, error: ApiSyncError) -> None:
        super().__init__(str(error))
        self.error = error


def shown_url(url: str) -> str:
    """The URL without credentials or query string (which may carry a token), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


# -- fetching ---------------------------------------------------------------------------------


class ApiClient:
    """GETs the answer, following `next` links; raises ApiSyncError, never returns a part."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        max_bytes: int = MAX_RESPONSE_BYTES,
        max_pages: int = MAX_PAGES,
        attempts: int = MAX_ATTEMPTS,
        backoff: float = BACKOFF_INITIAL_S,
        stop: threading.Event | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_pages = max_pages
        self.attempts = attempts
        self.backoff = backoff
        self.stop = stop or threading.Event()  # its wait() is the backoff sleep, cut by shutdown

    def fetch_items(self) -> tuple[list[Any], int]:
        """Every item of every page, and the number of pages."""
        items: list[Any] = []
        seen: set[str] = set()
        budget = self.max_bytes
        url = self.url
        with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
            for page in range(1, self.max_pages + 1):
                seen.add(url)
                body = self._get(client, url, budget)
                budget -= len(body)
                page_items, next_url = parse_page(body, url)
                items.extend(page_items)
                if next_url is None:
                    return items, page
                if next_url in seen:
                    raise ApiSyncError(
                        "wrong_shape", f"{shown_url(url)}: next link loops back to a seen page"
                    )
                url = next_url
        raise ApiSyncError(
            "too_many_pages", f"{shown_url(self.url)}: more than {self.max_pages} pages"
        )

    def _get(self, client: httpx.Client, url: str, budget: int) -> bytes:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return self._get_once(client, url, budget)
            except _Retryable as exc:
                if attempt == self.attempts:
                    raise exc.error from None
                log.warning(
                    "api_sync.retrying",
                    url=shown_url(url),
                    attempt=attempt,
                    case=exc.error.case,
                    error=str(exc.error),
                    delay_s=delay,
                )
                if self.stop.wait(delay):
                    raise ApiSyncError(
                        "cancelled", f"{shown_url(url)}: stopped while waiting to retry"
                    ) from None
                delay *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def _get_once(self, client: httpx.Client, url: str, budget: int) -> bytes:
        shown = shown_url(url)
        headers = {"Accept": "application/json"}
        # The token goes to API_URL's own origin only, never to a host a `next` link names.
        if self.token and _origin(url) == _origin(self.url):
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if not 200 <= status < 300:
                    error = ApiSyncError(
                        "http_status", f"{shown} answered HTTP {status}", status=status
                    )
                    if status >= 500 or status in _RETRYABLE_STATUS:
                        raise _Retryable(error)
                    raise error
                return _read_bounded(response, budget, self.max_bytes, shown)
        except httpx.TimeoutException as exc:
            raise _Retryable(
                ApiSyncError(
                    "timeout",
                    f"{shown} did not answer within REQUEST_TIMEOUT={self.timeout:g}s "
                    f"({type(exc).__name__})",
                )
            ) from None
        except httpx.ConnectError as exc:
            raise _Retryable(
                ApiSyncError("unreachable", f"cannot connect to {shown}: {exc}")
            ) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(
                ApiSyncError(
                    "incomplete", f"{shown}: the connection broke before the whole answer: {exc}"
                )
            ) from None
        except httpx.DecodingError as exc:
            raise ApiSyncError("invalid_json", f"{shown}: undecodable body: {exc}") from None
        except httpx.TooManyRedirects:
            raise ApiSyncError("http_status", f"{shown}: too many redirects") from None
        except httpx.HTTPError as exc:  # unsupported protocol, proxy error, ...
            raise ApiSyncError("unreachable", f"cannot request {shown}: {exc}") from None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _read_bounded(response: httpx.Response, budget: int, limit: int, shown: str) -> bytes:
    too_large = ApiSyncError("too_large", f"{shown}: the answer is larger than {limit} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget:
        raise too_large  # refused before reading a byte
    body = bytearray()
    for chunk in response.iter_bytes():  # decoded: a compressed bomb is cut as well
        body += chunk
        if len(body) > budget:
            raise too_large
    return bytes(body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: jsonb cannot store them


def parse_page(body: bytes, url: str) -> tuple[list[Any], str | None]:
    """One page's items and the absolute URL of the next page (None on the last)."""
    shown = shown_url(url)
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiSyncError(
            "invalid_json", f"{shown}: the answer is not valid JSON: {exc}"
        ) from None
    if not isinstance(document, dict):
        raise ApiSyncError(
            "wrong_shape", f'{shown}: expected an object with a "data" array, got {_kind(document)}'
        )
    data = document.get("data")
    if not isinstance(data, list):
        raise ApiSyncError(
            "wrong_shape", f'{shown}: expected "data" to be an array, got {_kind(data)}'
        )
    link = document.get("next")
    links = document.get("links")
    if link is None and isinstance(links, dict):
        link = links.get("next")
    if link is None or link == "":
        return data, None
    if not isinstance(link, str):
        raise ApiSyncError("wrong_shape", f"{shown}: next link must be a URL, got {_kind(link)}")
    absolute = urljoin(url, link)
    if urlsplit(absolute).scheme not in ("http", "https"):
        raise ApiSyncError("wrong_shape", f"{shown}: next link is not an http(s) URL")
    return data, absolute


# -- parsing items ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiItem:
    external_id: str  # domain_config_id exactly as the API sent it
    domain_config_id: UUID
    config: dict[str, Any]  # validated; MANAGED_FIELDS plus the rest of validate_config's keys


@dataclass(frozen=True)
class InvalidItem:
    domain_config_id: str | None  # as the API sent it; None when missing or not text
    reason: str
    mapped_id: UUID | None = None  # known even for a bad item: protects its row from DISABLE


def map_domain_config_id(value: str) -> tuple[UUID, bool]:
    """The UUID for an external id, and whether the id was a UUID itself."""
    if len(value) >= 32:  # UUID() only strips characters from its 32 hex digits: skip its raise
        try:
            return UUID(value), True
        except ValueError:
            pass
    return uuid5(EXTERNAL_ID_NAMESPACE, value), False


def _unstorable(value: Any, where: str) -> str | None:
    """Why PostgreSQL's jsonb would refuse `value` (a NUL character, a non-finite number)."""
    if isinstance(value, str):
        return f"{where} contains a NUL character" if "\x00" in value else None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} holds a number out of range"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key, where) or _unstorable(item, f"{where}.{key}")
            if problem:
                return problem
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _unstorable(item, f"{where}[{index}]")
            if problem:
                return problem
    return None


def _storable_fast(*values: Any) -> bool:
    """True when jsonb surely accepts `values` (C-speed); False means: look closer."""
    try:
        text = json.dumps(values, allow_nan=False)
    except ValueError:
        return False
    return "\\u0000" not in text


def parse_item(raw: Any, *, default_timezone: str = "UTC") -> ApiItem:
    """Map and validate one item; raise InvalidScheduleError with the exact reason."""
    if not isinstance(raw, dict):
        raise InvalidScheduleError(f"item must be an object, got {_kind(raw)}")
    external_id = raw.get("domain_config_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    if not isinstance(external_id, str) or not external_id.strip():
        raise InvalidScheduleError(
            f"domain_config_id must be a non-empty string, got {external_id!r}"
        )
    mapped, is_uuid = map_domain_config_id(external_id)
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidScheduleError(f"data must be an object, got {_kind(data)}")
    schedule = data.get("schedule")
    if not isinstance(schedule, dict):
        raise InvalidScheduleError(
            f"data.schedule must be an object with frequency and time, got {_kind(schedule)}"
        )
    unknown = sorted(set(schedule) - _SCHEDULE_KEYS)
    if unknown:
        raise InvalidScheduleError(
            f"data.schedule has unknown key(s) {', '.join(unknown)}; allowed: frequency, time, "
            + ", ".join(COMMON_KEYS)
        )
    time_part = schedule.get("time", {})
    if not isinstance(time_part, dict):
        raise InvalidScheduleError(f"data.schedule.time must be an object, got {_kind(time_part)}")
    options = {key: schedule[key] for key in COMMON_KEYS if key in schedule}
    clashes = sorted(k for k, v in options.items() if k in time_part and time_part[k] != v)
    if clashes:
        raise InvalidScheduleError(
            f"data.schedule and data.schedule.time disagree on {', '.join(clashes)}"
        )
    payload = {key: value for key, value in data.items() if key not in _DATA_COLUMNS}
    if not is_uuid:
        payload["external_id"] = external_id  # the mapped UUID alone cannot be traced back
    time_config = {**time_part, **options}
    if not _storable_fast(payload, time_config):
        problem = _unstorable(payload, "data") or _unstorable(time_config, "data.schedule")
        if problem:
            raise InvalidScheduleError(problem)
    config = validate_config(
        {
            "domain_config_id": mapped,
            "domain": data.get("domain"),
            "name": None,
            "profile_id": None,
            "frequency": schedule.get("frequency"),
            "time_config": time_config,
            "enabled": data.get("enabled", True),
            "job_type": data.get("job_type"),
            "payload": payload,
            "source": ScheduleSource.API.value,
        },
        default_timezone=default_timezone,
    )
    return ApiItem(external_id, mapped, config)


def parse_items(
    raws: Sequence[Any], *, default_timezone: str = "UTC"
) -> tuple[list[ApiItem], list[InvalidItem]]:
    """Valid items, and invalid ones with their reasons (in answer order)."""
    parsed: list[ApiItem | InvalidItem] = []
    for raw in raws:
        try:
            parsed.append(parse_item(raw, default_timezone=default_timezone))
        except InvalidScheduleError as exc:
            given = raw.get("domain_config_id") if isinstance(raw, dict) else None
            usable = isinstance(given, str | int) and not isinstance(given, bool)
            text = str(given) if usable and str(given).strip() else None
            mapped = map_domain_config_id(text)[0] if text is not None else None
            parsed.append(InvalidItem(text, exc.reason, mapped))
    occurrences = Counter(_mapped(entry) for entry in parsed)
    valid: list[ApiItem] = []
    invalid: list[InvalidItem] = []
    for entry in parsed:
        mapped = _mapped(entry)
        if mapped is not None and occurrences[mapped] > 1:
            given = entry.external_id if isinstance(entry, ApiItem) else entry.domain_config_id
            reason = f"domain_config_id {given!r} occurs {occurrences[mapped]} times in the answer"
            invalid.append(InvalidItem(given, reason, mapped))
        elif isinstance(entry, ApiItem):
            valid.append(entry)
        else:
            invalid.append(entry)
    return valid, invalid


def _mapped(entry: ApiItem | InvalidItem) -> UUID | None:
    return entry.domain_config_id if isinstance(entry, ApiItem) else entry.mapped_id


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
