"""Issue 21, "Hostile HTTP": a live `scheduler.py serve` (tests/support/api.py `serving`) under
inputs and clients an attacker would send. Each is a 4xx problem (or a time-out that closes the
connection), never a 5xx, a leak or a starved server; the same request written correctly works.

The server runs with short bounds (HOSTILE_ENV) so that the time-outs take a second, not the
defaults' ten or thirty.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from database.connection import DatabaseConnection
from tests.support.api import ServeProcess, assert_problem, client, make_token, schedule_body
from tests.support import services
from tests.support.api import serving as serve
from tests.support.raw_http import RawConnection, get, raw_request
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 60_000, "JSON nested deeper than 64 levels"),
        ('{"payload": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}", "JSON nested deeper than 64 levels"),
        ('{"payload": {"a": [' + "0," * 10_001 + "0]}}", "JSON with more than 10000 members and items"),
        ('{"payload": {' + ",".join(f'"k{i}":0' for i in range(10_001)) + "}}",
         "JSON with more than 10000 members and items"),
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
