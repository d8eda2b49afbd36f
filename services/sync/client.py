"""Fetching the schedules API's whole answer: bounded, retried, paginated, or a clear error.

`Authorization: Bearer API_TOKEN` (only to API_URL's origin), REQUEST_TIMEOUT, at most
MAX_RESPONSE_BYTES for all pages together (refused on Content-Length, else cut while streaming),
MAX_ATTEMPTS tries per page with doubling backoff on connection errors, time-outs, broken bodies,
408, 429 and 5xx; pagination by a top-level `next` or `links.next` URL, up to MAX_PAGES.

httpx is imported at the first fetch, not with this module, which every daemon loads (most never
sync): its import costs start-up time and memory.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from services.errors import ApiSyncError, RetryablePage
from services.log import get_logger

if TYPE_CHECKING:
    import httpx

log = get_logger(__name__)
MAX_RESPONSE_BYTES = 50 * 1024 * 1024  # for the whole answer, every page included
MAX_PAGES = 100
MAX_ATTEMPTS = 3  # per page: the first try and two retries
BACKOFF_INITIAL_S = 0.5  # doubles after each failed try
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
_RETRYABLE_STATUS = frozenset({408, 429})


def shown_url(url: str) -> str:
    """The URL without credentials or query string (which may carry a token), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def json_kind(value: object) -> str:
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
        import httpx  # at the first fetch (see the module's text)

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
            except RetryablePage as exc:
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
        import httpx  # loaded by fetch_items already

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
                        raise RetryablePage(error)
                    raise error
                return _read_bounded(response, budget, self.max_bytes, shown)
        except httpx.TimeoutException as exc:
            raise RetryablePage(
                ApiSyncError(
                    "timeout",
                    f"{shown} did not answer within REQUEST_TIMEOUT={self.timeout:g}s "
                    f"({type(exc).__name__})",
                )
            ) from None
        except httpx.ConnectError as exc:
            raise RetryablePage(
                ApiSyncError("unreachable", f"cannot connect to {shown}: {exc}")
            ) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise RetryablePage(
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
            "wrong_shape",
            f'{shown}: expected an object with a "data" array, got {json_kind(document)}',
        )
    data = document.get("data")
    if not isinstance(data, list):
        raise ApiSyncError(
            "wrong_shape", f'{shown}: expected "data" to be an array, got {json_kind(data)}'
        )
    link = document.get("next")
    links = document.get("links")
    if link is None and isinstance(links, dict):
        link = links.get("next")
    if link is None or link == "":
        return data, None
    if not isinstance(link, str):
        raise ApiSyncError(
            "wrong_shape", f"{shown}: next link must be a URL, got {json_kind(link)}"
        )
    absolute = urljoin(url, link)
    if urlsplit(absolute).scheme not in ("http", "https"):
        raise ApiSyncError("wrong_shape", f"{shown}: next link is not an http(s) URL")
    return data, absolute
