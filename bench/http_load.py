"""HTTP for the API benchmark: `scheduler.py serve` with a read token, timed requests on one
keep-alive connection, cursor walks, and N concurrent clients in a child process.

The concurrent clients run in a process of their own (multiprocessing, spawn), each on its own
thread with its own httpx.Client (keep-alive): their Python never competes for the GIL of the
process under test, which matters when that process is the bench's in-process daemon. Each
client walks the list by following `next_cursor` and starts again at the first page after the
last; every answered request is recorded as (end time, latency) on CLOCK_MONOTONIC, which the
parent shares, so the parent counts pages in a window it chooses itself.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx

from bench.common import bench_environ, redis_prefix
from database.connection import DatabaseConnection
from tests.support.api import ServeProcess, make_token

LIST_PATH = "/api/v1/schedules"
WALK_PAGE = 500  # the API's largest page: a walk to a deep cursor takes the fewest requests
READY_TIMEOUT = 60.0


@contextmanager
def serving(url: str, *, token_name: str = "bench-reader") -> Iterator[tuple[ServeProcess, str]]:
    """`scheduler.py serve` on the database of `url`, and a read token for it."""
    db = DatabaseConnection(url, min_size=1, max_size=1)
    try:
        token = make_token(db, token_name, "read")
    finally:
        db.close()
    with redis_prefix() as prefix, tempfile.TemporaryDirectory(prefix="es_bench_") as tmp:
        env = {**bench_environ(url, prefix), "ENV_FILE": ""}
        server = ServeProcess(env, Path(tmp) / "serve.log").start()
        try:
            yield server, token
            still_serving(server)
        finally:
            server.stop()


def still_serving(server: ServeProcess) -> None:
    """Raise, with its exit code and last log lines, when `serve` exited before we stopped it
    (exit code 0: it got a SIGTERM or SIGINT from someone)."""
    assert server.process is not None
    code = server.process.poll()
    if code is not None:
        tail = "\n".join(server.log().splitlines()[-5:])
        raise RuntimeError(f"scheduler.py serve exited on its own (exit code {code}):\n{tail}")


def api_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
    )


def timed_get(client: httpx.Client, path: str, params: Mapping[str, Any]) -> tuple[float, Any]:
    """(seconds, parsed JSON body) of one GET; raises on any status but 200."""
    started = time.perf_counter()
    response = client.get(path, params=dict(params))
    body = response.json()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} {dict(params)}: {response.status_code} {response.text}")
    return elapsed, body


def latencies(client: httpx.Client, path: str, params: Mapping[str, Any], n: int) -> list[float]:
    """Seconds of `n` identical GETs, one after the other, after one untimed warm-up GET."""
    timed_get(client, path, params)
    return [timed_get(client, path, params)[0] for _ in range(n)]


@dataclass(frozen=True)
class Walk:
    """Every page of a listing, by its cursors: `cursors[i]` starts the page after i pages."""

    cursors: list[str]
    rows: int
    distinct: int  # distinct schedule_ids seen (== rows when paging neither skips nor repeats)
    seconds: float

    def cursor_at(self, fraction: float) -> str | None:
        """The cursor `fraction` of the way through the rows (None: there is one page only)."""
        if not self.cursors:
            return None
        return self.cursors[min(len(self.cursors) - 1, int(fraction * len(self.cursors)))]


def walk(client: httpx.Client, params: Mapping[str, Any]) -> Walk:
    """Follow next_cursor from the first page to the last, WALK_PAGE rows a page."""
    cursors: list[str] = []
    seen: set[str] = set()
    rows = 0
    cursor: str | None = None
    started = time.perf_counter()
    while True:
        page = {**params, "limit": WALK_PAGE, **({"cursor": cursor} if cursor else {})}
        _, body = timed_get(client, LIST_PATH, page)
        rows += len(body["items"])
        seen.update(item["schedule_id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return Walk(cursors, rows, len(seen), time.perf_counter() - started)
        cursors.append(cursor)


# -- concurrent clients -------------------------------------------------------------------------


@dataclass
class LoadResult:
    done: list[tuple[float, float]] = field(default_factory=list)  # (end monotonic, seconds)
    errors: int = 0
    first_error: str | None = None

    def window(self, start: float, end: float) -> list[float]:
        """Latencies (s) of the requests that ended between two CLOCK_MONOTONIC readings."""
        return [latency for at, latency in self.done if start <= at < end]


class ClientLoad:
    """`clients` concurrent clients walking `params` pages of LIST_PATH until stopped."""

    def __init__(
        self, base_url: str, token: str, params: Mapping[str, Any], *, clients: int = 8
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ready = context.Event()
        self._results, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_client_process,
            args=(base_url, token, dict(params), clients, self._stop, self._ready, child_end),
            name="bench-http-clients",
            daemon=True,
        )
        self.result: LoadResult | None = None

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def start(self) -> None:
        """Start the clients; returns once each has had its first answer."""
        self._process.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.2):
            if not self._process.is_alive():
                raise RuntimeError(f"the HTTP clients exited ({self._process.exitcode})")
            if time.monotonic() > deadline:
                self._process.kill()
                raise RuntimeError(f"the HTTP clients got no answer within {READY_TIMEOUT:g}s")

    def stop(self) -> LoadResult:
        self._stop.set()
        if not self._results.poll(READY_TIMEOUT):
            self._process.kill()
            raise RuntimeError("the HTTP clients did not report")
        self.result = self._results.recv()
        self._process.join(10)
        assert self.result is not None
        if self.result.errors:
            raise RuntimeError(
                f"{self.result.errors} requests of the load failed, e.g. {self.result.first_error}"
            )
        return self.result


@contextmanager
def client_load(
    base_url: str, token: str, params: Mapping[str, Any], *, clients: int = 8
) -> Iterator[ClientLoad]:
    """Concurrent clients for the duration of the block; `.result` is set on exit."""
    load = ClientLoad(base_url, token, params, clients=clients)
    load.start()
    try:
        yield load
    finally:
        load.stop()


def _client_process(
    base_url: str,
    token: str,
    params: dict[str, Any],
    clients: int,
    stop: Event,
    ready: Event,
    out: Connection,
) -> None:
    result = LoadResult()
    lock = threading.Lock()
    answered = threading.Barrier(clients, action=ready.set)

    def client() -> None:
        done: list[tuple[float, float]] = []
        first = True
        with api_client(base_url, token) as http:
            cursor: str | None = None
            while not stop.is_set():
                page = {**params, **({"cursor": cursor} if cursor else {})}
                started = time.monotonic()
                try:
                    response = http.get(LIST_PATH, params=page)
                    response.raise_for_status()
                    cursor = response.json()["next_cursor"]
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    with lock:
                        result.errors += 1
                        result.first_error = result.first_error or repr(exc)
                    cursor = None
                else:
                    ended = time.monotonic()
                    done.append((ended, ended - started))
                if first:
                    first = False
                    try:
                        answered.wait(READY_TIMEOUT)
                    except threading.BrokenBarrierError:  # the parent gives up and says so
                        pass
        with lock:
            result.done.extend(done)

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send(result)
    out.close()
