"""Issue 21, "Hostile HTTP": a live `scheduler.py serve` (tests/support/api.py `serving`) under
inputs and clients an attacker would send. Each is a 4xx problem (or a time-out that closes the
connection), never a 5xx, a leak or a starved server; the same request written correctly works.

The server runs with short bounds (HOSTILE_ENV) so that the time-outs take a second, not the
defaults' ten or thirty.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from database.connection import DatabaseConnection
from services.web.auth_throttle import SLOWDOWN_SECONDS
from tests.support import services
from tests.support.api import (
    ServeProcess,
    assert_problem,
    client,
    dashboard_login,
    make_token,
    schedule_body,
)
from tests.support.api import serving as serve
from tests.support.daemon import DaemonProcess
from tests.support.raw_http import RawConnection, get, raw_request
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

MAX_BODY = 256 * 1024
HOSTILE_ENV = {
    "HTTP_MAX_BODY_BYTES": str(MAX_BODY),
    "HTTP_HEADER_TIMEOUT": "1",
    "HTTP_BODY_TIMEOUT": "1",
    "HTTP_MAX_CONNECTIONS": "64",
}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(
    template_database: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """One server for the module (starting one takes a second): each test keeps to rows,
    client addresses and connections of its own."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    with services.cloned_database(template_database) as database_url:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "LOG_FORMAT": "json",
            "ENV_FILE": "",
            **HOSTILE_ENV,
        }
        log = tmp_path_factory.mktemp("hostile") / "serve.log"
        with serve(env, log) as live:
            yield live


@pytest.fixture(scope="module")
def token(server: ServeProcess) -> str:
    db = DatabaseConnection(server.env["DATABASE_URL"], min_size=1, max_size=1)
    try:
        return make_token(db, "hostile", "admin")
    finally:
        db.close()


@pytest.fixture
def http(server: ServeProcess, token: str) -> Iterator[httpx.Client]:
    with client(server.url, token) as http:
        yield http


def post_head(path: str, token: str, *headers: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def health_answers(server: ServeProcess) -> bool:
    return httpx.get(f"{server.url}/health", timeout=5.0).status_code == 200


# -- 1. bodies over the limit ------------------------------------------------------------------


def test_a_content_length_over_the_limit_is_413_before_the_body_is_sent(
    server: ServeProcess, token: str
) -> None:
    with RawConnection(server.port) as conn:
        conn.send(post_head("/api/v1/schedules", token, f"Content-Length: {10 * MAX_BODY}"))
        response = conn.response()  # no byte of the body was sent: the answer came at once
        assert response.status == 413, response
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["connection"] == "close"
        assert response.json()["errors"] == [
            {"field": "body", "message": f"request body over {MAX_BODY} bytes"}
        ]
        assert conn.closed_by_server(within=5)


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(
    server: ServeProcess, token: str
) -> None:
    chunk = b"x" * 4096
    with RawConnection(server.port) as conn:
        conn.send(post_head("/api/v1/schedules", token, "Transfer-Encoding: chunked"))
        sent = 0
        while sent < 4 * MAX_BODY and conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
            sent += len(chunk)
        response = conn.response()
    assert response.status == 413, response
    assert response.json()["detail"] == f"request body over {MAX_BODY} bytes"


def test_a_body_just_under_the_limit_is_read(http: httpx.Client) -> None:
    body = schedule_body(payload={"url": "http://127.0.0.1:9/x", "pad": ""})
    body["payload"]["pad"] = "p" * (MAX_BODY - len(json.dumps(body)) - 100)
    created = http.post("/api/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    assert len(created.json()["payload"]["pad"]) > MAX_BODY - 1000


# -- 2. deep or huge JSON ----------------------------------------------------------------------


DEEP = "JSON nested deeper than 64 levels"
MANY = "JSON with more than 10000 members and items"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 60_000, "JSON nested deeper than 64 levels"),
        (
            '{"payload": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}",
            "JSON nested deeper than 64 levels",
        ),
        (
            '{"payload": {"a": [' + "0," * 10_001 + "0]}}",
            "JSON with more than 10000 members and items",
        ),
        (
            '{"payload": {' + ",".join(f'"k{i}":0' for i in range(10_001)) + "}}",
            "JSON with more than 10000 members and items",
        ),
    ],
    ids=["60000-deep", "71-deep", "10002-items", "10001-keys"],
)
def test_deep_or_huge_json_is_422_naming_the_body(
    http: httpx.Client, text: str, message: str
) -> None:
    response = http.post(
        "/api/v1/schedules", content=text, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert problem["errors"] == [{"field": "body", "message": message}]


def test_json_within_the_bounds_is_accepted(http: httpx.Client) -> None:
    nested: Any = 1
    for _ in range(60):  # the body's object and payload make 62 levels
        nested = {"a": nested}
    many = {f"k{i}": i for i in range(2000)}
    for payload in ({"url": "http://127.0.0.1:9/x", "deep": nested}, {"url": "http://h/", **many}):
        created = http.post("/api/v1/schedules", json=schedule_body(payload=payload))
        assert created.status_code == 201, created.text[:500]


# -- 3. slow and half-open clients -------------------------------------------------------------


class Trickle(threading.Thread):
    """Sends `data` a byte every `interval` seconds until the server closes the connection
    (or `limit` seconds pass); records when it was closed."""

    def __init__(self, port: int, data: bytes, interval: float = 0.1, limit: float = 20) -> None:
        super().__init__(daemon=True)
        self.conn = RawConnection(port)
        self.data, self.interval, self.limit = data, interval, limit
        self.closed_after: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        with self.conn:
            for byte in self.data:
                if time.monotonic() - started > self.limit or not self.conn.send(bytes([byte])):
                    break
                if self.conn.closed_by_server(within=self.interval):
                    break
            else:
                if not self.conn.closed_by_server(within=self.limit):
                    return
            self.closed_after = time.monotonic() - started


def test_a_slowloris_is_cut_off_at_the_header_deadline_while_health_answers(
    server: ServeProcess,
) -> None:
    endless = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 10_000
    slow = [Trickle(server.port, endless) for _ in range(8)]
    for trickle in slow:
        trickle.start()
    # Meanwhile, another client is answered (each of its requests within httpx's timeout).
    for _ in range(5):
        assert health_answers(server)
    for trickle in slow:
        trickle.join(30)
        # Closed by the server (HTTP_HEADER_TIMEOUT=1), not by the trickle's own 20-s limit.
        assert trickle.closed_after is not None and trickle.closed_after < 15, trickle.closed_after


def test_a_connection_that_sends_nothing_is_closed(server: ServeProcess) -> None:
    with RawConnection(server.port) as silent:
        assert silent.closed_by_server(within=15)
    # ... and so is one that sends nothing after its first answer (keep-alive).
    with RawConnection(server.port) as idle:
        idle.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle.response().status == 200
        assert idle.closed_by_server(within=15)


def test_a_body_slower_than_allowed_is_408_and_closed(server: ServeProcess, token: str) -> None:
    body = json.dumps(schedule_body()).encode()
    with RawConnection(server.port) as conn:
        conn.send(post_head("/api/v1/schedules", token, f"Content-Length: {len(body)}"))
        for byte in body:  # a byte every 0.1 s: the whole body would take minutes
            if not conn.send(bytes([byte])) or conn.closed_by_server(within=0.1):
                break
            if b"\r\n\r\n" in conn.buffer:
                break
        response = conn.response()
    assert response.status == 408, response
    assert response.json()["detail"] == "request body not received within 1 s"


@pytest.fixture
def patient_server(env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    """A server whose head deadline is far off, so only the connection cap can close sockets."""
    limits = {**HOSTILE_ENV, "HTTP_HEADER_TIMEOUT": "120"}
    with serve({**env, **limits}, tmp_path / "serve.log") as live:
        yield live


def test_a_thousand_idle_sockets_neither_exhaust_descriptors_nor_keep_health_out(
    patient_server: ServeProcess,
) -> None:
    server = patient_server
    assert server.process is not None
    fds = Path(f"/proc/{server.process.pid}/fd")
    before = len(list(fds.iterdir()))
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        # The cap (HTTP_MAX_CONNECTIONS=64) holds while they are all open (the server closes
        # each one over it as it accepts it)...
        wait_until(lambda: len(list(fds.iterdir())) <= before + 64 + 8, 10, 0.05, "the cap")
        # ...and a real client is still answered: it makes room by closing an idle one.
        for _ in range(5):
            assert health_answers(server)
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: len(list(fds.iterdir())) <= before + 2, 15, 0.1, "descriptors released")


# -- 4. malformed headers ----------------------------------------------------------------------

SCHEDULE = json.dumps(schedule_body()).encode()


def _request(method: str, target: str, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += headers + ([b"Content-Length: %d" % len(body)] if method != "GET" else [])
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


MALFORMED = {
    "text/plain body": (b"Content-Type: text/plain", SCHEDULE),
    "xml body": (b"Content-Type: application/xml", b"<schedule/>"),
    "content-type of semicolons": (b"Content-Type: ;;;;", SCHEDULE),
    "multipart without parts": (b"Content-Type: multipart/form-data; boundary=x", b"--x\r\n"),
    "binary charset": (b"Content-Type: application/json; charset=\xff\xfe", b"\xff\xfe{"),
    "body not utf-8": (b"Content-Type: application/json", b'{"domain": "\xff\xfe"}'),
    "basic auth": (b"Authorization: Basic dXNlcjpwYXNz", b""),
    "bearer without token": (b"Authorization: Bearer", b""),
    "bearer with spaces": (b"Authorization: Bearer a b c", b""),
    "non-ascii token": (b"Authorization: Bearer \xc3\xa9\xff\x80", b""),
    "no scheme": (b"Authorization: " + b"x" * 8000, b""),
    "huge header value": (b"X-Big: " + b"x" * 20_000, b""),
    "many headers": (b"\r\n".join(b"X-H%d: v" % i for i in range(3000)), b""),
    "non-ascii host": (b"Host: \xff", b""),
    "space in a name": (b"Bad Header: x", b""),
    "nul in a value": (b"X-Nul: a\x00b", b""),
    "negative length": (b"Content-Length: -1", b""),
    "unknown transfer coding": (b"Transfer-Encoding: gzip", b""),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_header_is_a_4xx(server: ServeProcess, token: str, name: str) -> None:
    header, body = MALFORMED[name]
    auth = [] if header.startswith(b"Authorization") else [f"Bearer {token}".encode()]
    auth = [b"Authorization: " + a for a in auth]
    methods = ["POST"] if body else ["POST", "GET"]  # a body's headers matter to a POST only
    for method in methods:
        target = "/api/v1/schedules"
        response = raw_request(server.port, _request(method, target, [*auth, header], body))
        assert 400 <= response.status < 500, (method, response)
        assert b"Traceback" not in response.body and token.encode() not in response.body


def test_a_header_the_request_does_not_read_is_harmless_whatever_its_bytes(
    server: ServeProcess, token: str
) -> None:
    auth = b"Authorization: Bearer " + token.encode()
    for header in [b"Cookie: es_session=\xff\xfe; a", b"Accept: \xff", b"If-Match: \xff"]:
        response = raw_request(server.port, _request("GET", "/api/v1/schedules", [auth, header]))
        assert response.status == 200, (header, response)
    # The dashboard reads the cookie: a session id that is no session is a login redirect.
    response = raw_request(server.port, _request("GET", "/", [b"Cookie: es_session=\xff\xfe"]))
    assert response.status == 303 and response.headers["location"].startswith("/login")


def test_oversized_headers_are_431_however_they_arrive(server: ServeProcess, token: str) -> None:
    head = _request("GET", "/api/v1/schedules", [b"X-Big: " + b"x" * 17_000])
    whole = raw_request(server.port, head)  # in one read
    with RawConnection(server.port) as conn:  # in pieces
        for start in range(0, len(head), 1000):
            conn.send(head[start : start + 1000])
        pieces = conn.response()
    assert {whole.status, pieces.status} <= {400, 431}, (whole, pieces)
    assert whole.status == 431 and whole.json()["errors"][0]["field"] == "headers"


# -- 5. path traversal on static files ---------------------------------------------------------

TRAVERSALS = [
    "/static/../services/config.py",
    "/static/../../services/config.py",
    "/static/%2e%2e/config.py",
    "/static/%2e%2e/%2e%2e/services/config.py",
    "/static/..%2f..%2fservices%2fconfig.py",
    "/static/%252e%252e/%252e%252e/services/config.py",
    "/static/..%5c..%5cconfig.py",
    "/static/..\\..\\config.py",
    "/static/%c0%ae%c0%ae/config.py",
    "/static/app.css%00",
    "/static/%00",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/..",
    "/static/.",
    "/static/",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_a_path_out_of_static_is_404(server: ServeProcess, target: str) -> None:
    response = get(server.port, target)
    assert response.status == 404, response
    assert b"_setting" not in response.body and b"root:" not in response.body
    assert get(server.port, "/static/app.css").status == 200  # the way in still works


# -- 6. SQL metacharacters in every filter -----------------------------------------------------

HOSTILE_VALUES = [
    "'",
    "' OR '1'='1",
    "x'; DROP TABLE schedules; --",
    "-- comment",
    "%",
    "_",
    "\\",
    "\\'",
    "a\x00b",
    "é' \u202e",
    "%' UNION SELECT token_sha256 FROM api_tokens --",
    "x" * 20_000,
]


def _list_routes(http: httpx.Client) -> list[tuple[str, list[str]]]:
    """Every GET of the API that takes query parameters, from its own OpenAPI document."""
    paths = http.get("/openapi.json").json()["paths"]
    routes = []
    for path, item in paths.items():
        get_op = item.get("get")
        names = [p["name"] for p in (get_op or {}).get("parameters", []) if p["in"] == "query"]
        if path.startswith("/api/v1/") and names:
            routes.append((path, names))
    return routes


def test_sql_metacharacters_in_every_filter_are_never_a_5xx(
    http: httpx.Client, server: ServeProcess, token: str
) -> None:
    schedule_id = http.post("/api/v1/schedules", json=schedule_body()).json()["schedule_id"]
    routes = _list_routes(http)
    assert len(routes) >= 7, routes  # schedules, executions (2), audit (2), stats, notifications
    statuses: dict[int, int] = {}
    for path, names in routes:
        url = path.replace("{schedule_id}", schedule_id)
        for name in names:
            for value in HOSTILE_VALUES:
                response = http.get(url, params={name: value})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (path, name, value[:40], response.text)
                assert "Traceback" not in response.text and token not in response.text
                if response.status_code == 200 and name not in ("sort",):
                    _assert_filtered(response.json(), name)
        for value in HOSTILE_VALUES:  # the path's own parameter
            if "{schedule_id}" in path:
                response = http.get(path.replace("{schedule_id}", quote(value, safe="")))
                assert 400 <= response.status_code < 500, (path, value[:40], response.text)
    print(f"metacharacters: {sum(statuses.values())} requests, statuses {sorted(statuses.items())}")
    # The table is still there and still answers.
    assert http.get(f"/api/v1/schedules/{schedule_id}").status_code == 200


def _assert_filtered(body: Any, name: str) -> None:
    """A hostile value that is accepted as a filter matches nothing here (no row has it)."""
    if isinstance(body, dict) and "items" in body and name not in ("limit", "cursor", "days"):
        assert body["items"] == [], (name, body["items"][:1])


def test_percent_and_underscore_in_q_match_literally(http: httpx.Client) -> None:
    tag = f"like-{uuid.uuid4().hex[:8]}"
    domains = ["100%.like.example", "a_b.like.example", "axb.like.example", "back\\slash.like"]
    for domain in domains:
        body = schedule_body(domain=domain, tags=[tag])
        assert http.post("/api/v1/schedules", json=body).status_code == 201

    def found(q: str) -> set[str]:
        page = http.get("/api/v1/schedules", params={"q": q, "tag": tag}).json()
        return {item["domain"] for item in page["items"]}

    assert found("%") == {"100%.like.example"}
    assert found("_") == {"a_b.like.example"}
    assert found("a_b") == {"a_b.like.example"}  # not axb: `_` is no wildcard
    assert found("\\") == {"back\\slash.like"}
    assert found("%.like") == {"100%.like.example"}
    assert found("like") == set(domains)


def test_the_dashboard_search_takes_metacharacters_as_text(
    server: ServeProcess, token: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=20.0) as browser:
        assert dashboard_login(browser, token).status_code == 303
        for value in HOSTILE_VALUES:
            for params in ({"q": value}, {"tag": value}, {"status": value}, {"frequency": value}):
                page = browser.get("/schedules", params=params)
                assert page.status_code < 500, (params, page.text[:300])
            page = browser.get("/audit", params={"actor": value, "schedule_id": value})
            assert page.status_code < 500, (value, page.text[:300])


# -- 7. repeated bad tokens --------------------------------------------------------------------


def _from(server: ServeProcess, address: str, token: str | None) -> httpx.Client:
    """A client whose requests come from `address` (any 127.x.y.z reaches 127.0.0.1)."""
    transport = httpx.HTTPTransport(local_address=address)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=server.url, transport=transport, headers=headers, timeout=20.0)


def test_repeated_bad_tokens_from_one_address_get_their_401s_late(
    server: ServeProcess, token: str
) -> None:
    """The contract's 401 stays; past 10 bad tokens within a minute from one address, each
    further one is answered only after SLOWDOWN_SECONDS (a lower bound: sleeps never end early)."""
    with (
        _from(server, "127.0.0.21", "es_wrong") as attacker,
        _from(server, "127.0.0.21", token) as neighbour,
        _from(server, "127.0.0.22", "es_wrong_too") as other,
    ):
        statuses = [attacker.get("/api/v1/schedules").status_code for _ in range(10)]
        assert statuses == [401] * 10
        began = time.monotonic()
        throttled = attacker.get("/api/v1/schedules")
        assert time.monotonic() - began >= SLOWDOWN_SECONDS
        problem = assert_problem(throttled, 401)
        assert problem["detail"] == "unknown or revoked token"
        assert throttled.headers["WWW-Authenticate"].startswith("Bearer")
        # A good token from the same address is answered, and a bad one from another is
        # within its own limit.
        assert neighbour.get("/api/v1/schedules").status_code == 200
        assert other.get("/api/v1/schedules").status_code == 401
        assert attacker.get("/api/v1/schedules", headers={"Authorization": ""}).status_code == 401


# -- 8. oversized pages ------------------------------------------------------------------------

LIST_PATHS = ["/api/v1/schedules", "/api/v1/executions", "/api/v1/audit", "/api/v1/notifications"]


@pytest.mark.parametrize("path", LIST_PATHS)
def test_a_page_size_outside_1_to_500_is_422_and_a_bad_cursor_400(
    http: httpx.Client, path: str
) -> None:
    for limit in ["501", "0", "-1", "10" * 40, "1e3", "NaN", ""]:
        problem = assert_problem(http.get(path, params={"limit": limit}), 422)
        assert problem["errors"][0]["field"] == "limit", problem
    assert http.get(path, params={"limit": "500"}).status_code == 200
    for cursor in ["-1", "9" * 400, "!!!", "eyJ4IjogMX0", "W10=", "=" * 5000, "AAAA" * 3000]:
        response = http.get(path, params={"cursor": cursor})
        assert response.status_code in (400, 422), (cursor[:20], response.text)
        assert_problem(response, response.status_code)


def test_windows_of_days_and_waits_outside_their_range_are_422(http: httpx.Client) -> None:
    schedule_id = http.post("/api/v1/schedules", json=schedule_body()).json()["schedule_id"]
    for days in ["0", "-1", "3651", "1e400", "inf", "nan"]:
        assert_problem(http.get("/api/v1/executions/stats", params={"days": days}), 422)
    for wait in ["-1", "61", "1e400", "nan"]:
        url = f"/api/v1/schedules/{schedule_id}/trigger"
        assert_problem(http.post(url, params={"wait": wait}), 422)


def test_the_dashboard_login_form_is_throttled_alike(server: ServeProcess, token: str) -> None:
    with _from(server, "127.0.0.23", None) as guesser, _from(server, "127.0.0.23", None) as user:
        statuses = [dashboard_login(guesser, f"es_guess{i}").status_code for i in range(10)]
        assert statuses == [401] * 10
        began = time.monotonic()
        throttled = dashboard_login(guesser, "es_guess_again")
        assert time.monotonic() - began >= SLOWDOWN_SECONDS
        assert throttled.status_code == 401 and "Unknown or revoked token" in throttled.text
        assert dashboard_login(user, token).status_code == 303  # a good token still logs in


# -- the daemon's own server takes the same limits -------------------------------------------


def test_the_daemon_serves_with_the_limits_of_its_settings(
    env: dict[str, str], db: DatabaseConnection, tmp_path: Path
) -> None:
    port = free_port()
    daemon_env = {**env, **HOSTILE_ENV, "HTTP_PORT": str(port)}
    token = make_token(db, "daemon-hostile", "write")
    with DaemonProcess(daemon_env, tmp_path / "daemon.log", instance_id="hostile-daemon"):
        wait_until(lambda: _answers(port), 30, 0.1, "the daemon's HTTP server")
        with RawConnection(port) as conn:
            conn.send(post_head("/api/v1/schedules", token, f"Content-Length: {MAX_BODY + 1}"))
            assert conn.response().status == 413
        with RawConnection(port) as silent:  # HTTP_HEADER_TIMEOUT=1
            assert silent.closed_by_server(within=15)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
