"""Case 9: the REST API hammered by 4 clients while the kill -9 chaos of case 1 runs.

Three instances serve the API on ports of their own (each restart on the same port) and fire
100 schedules every second; four client threads read every list and status route, create,
patch and delete schedules of their own and trigger a dedicated schedule, each request on a
random instance (one that was just killed answers nothing: the client moves on to the next).

Beyond case 1's invariants (unchanged by the API load):
- no 5xx and no unexpected status from a live instance;
- nothing the API acknowledged is lost: every schedule answered 201 and not deleted is in the
  table with the time_config of its last acknowledged PATCH, every 204 DELETE is gone;
- every trigger answered 202 is resolved and has exactly one row (run, or skipped saying why),
  even when the instance that claimed it was killed before it ran it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from database.connection import DatabaseConnection
from tests.faults.chaos import kill_loop
from tests.faults.common import NOOP, Spawn, db_now, engine_env, percentile, scaled, start_all
from tests.faults.invariants import CaseRecord, check_invariants
from tests.support.api import make_token, schedule_body
from tests.support.daemon import DaemonProcess
from tests.support.redis_server import free_port
from tests.support.schedules import insert_interval_schedules, query
from tests.support.waiting import wait_until

SCHEDULES, PERIOD = 100, 1
DURATION = scaled(60)
CLIENTS = 4
LOCK_TIMEOUT, HEARTBEAT, SCHEDULE_CHECK_INTERVAL = 5.0, 0.5, 2.0
CHECK_INTERVAL = SCHEDULE_CHECK_INTERVAL + 2.0
API_DOMAIN = "api-chaos.example.com"
# What a live instance may answer this mix: /ready says 503 while an instance starts.
EXPECTED = {200, 201, 202, 204}


@dataclass
class Tally:
    """One client's account of what the API answered; read once the clients have stopped."""

    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    unreachable: int = 0
    cut_off: int = 0
    latencies: list[float] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> last acked config
    deleted: set[str] = field(default_factory=set)
    triggers: list[str] = field(default_factory=list)
    # Writes cut off by a kill after they were sent: applied or not, nobody can say.
    uncertain: set[str] = field(default_factory=set)
    uncertain_creates: int = 0


class ApiClient(threading.Thread):
    """Requests in a loop on random instances until `stop` is set."""

    def __init__(
        self, urls: list[str], token: str, case_ids: list[str], trigger_ids: list[str], seed: int
    ) -> None:
        super().__init__(name=f"api-client-{seed}", daemon=True)
        self.urls = urls
        self.case_ids = case_ids
        self.trigger_ids = trigger_ids
        self.rng = random.Random(seed)
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        self.stop = threading.Event()
        self.tally = Tally()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._one()
        finally:
            self.http.close()

    def _one(self) -> None:
        rng = self.rng
        roll = rng.random()
        sid = rng.choice(self.case_ids)
        if roll < 0.55:
            path = rng.choice(
                [
                    "/api/v1/schedules?limit=100",
                    f"/api/v1/schedules?q=api-chaos&sort=next_run&limit={rng.randint(1, 500)}",
                    "/api/v1/schedules?enabled=true&job_type=python&frequency=interval",
                    f"/api/v1/schedules/{sid}",
                    f"/api/v1/schedules/{sid}/executions?limit=50",
                    f"/api/v1/executions?schedule_id={sid}&status=completed&limit=100",
                    "/api/v1/executions?trigger=manual&limit=20",
                    "/api/v1/executions/running",
                    "/api/v1/executions/stats",
                    "/api/v1/scheduler/status",
                    "/api/v1/audit?limit=20",
                    "/status",
                    "/ready",
                    "/health",
                    "/metrics",
                ]
            )
            self._send("GET", path)
        elif roll < 0.7 or not self.tally.live:
            body = schedule_body(domain=API_DOMAIN, time_config={"minutes": rng.randint(10, 60)})
            answer = self._send("POST", "/api/v1/schedules", body)
            if answer is None:
                self.tally.uncertain_creates += 1
            elif answer.status_code == 201:
                self.tally.live[answer.json()["schedule_id"]] = body["time_config"]
        elif roll < 0.82:
            own = rng.choice(sorted(self.tally.live))
            config = {"minutes": rng.randint(10, 60)}
            answer = self._send("PATCH", f"/api/v1/schedules/{own}", {"time_config": config})
            if answer is None:
                self.tally.uncertain.add(own)
            elif answer.status_code == 200:
                self.tally.live[own] = config
        elif roll < 0.9:
            own = rng.choice(sorted(self.tally.live))
            answer = self._send("DELETE", f"/api/v1/schedules/{own}")
            if answer is None:
                self.tally.uncertain.add(own)
                del self.tally.live[own]
            elif answer.status_code == 204:
                del self.tally.live[own]
                self.tally.deleted.add(own)
        else:
            target = rng.choice(self.trigger_ids)
            answer = self._send("POST", f"/api/v1/schedules/{target}/trigger")
            if answer is not None and answer.status_code == 202:
                self.tally.triggers.append(answer.json()["request_id"])

    def _send(self, method: str, path: str, body: Any = None) -> httpx.Response | None:
        """The answer of the first instance (from a random one on) that answers at all; None
        when a write was cut off after it was sent (it may or may not have been applied), or
        when no instance could be reached."""
        start = self.rng.randrange(len(self.urls))
        for url in self.urls[start:] + self.urls[:start]:
            began = time.monotonic()
            try:
                answer = self.http.request(method, url + path, json=body)
            except httpx.ConnectError:
                self.tally.unreachable += 1  # killed, or not yet listening again: not sent
                continue
            except httpx.TransportError:
                self.tally.cut_off += 1  # the instance died under the request
                if method != "GET":
                    return None
                continue
            self.tally.latencies.append(time.monotonic() - began)
            self.tally.statuses[answer.status_code] += 1
            ready_while_starting = path == "/ready" and answer.status_code == 503
            if answer.status_code not in EXPECTED and not ready_while_starting:
                self.tally.unexpected.append(
                    f"{method} {path} -> {answer.status_code}: {answer.text[:300]}"
                )
            return answer
        time.sleep(0.05)  # all three down at once cannot happen here, but never spin
        return None


@pytest.mark.timeout(int(200 + 2 * DURATION))
def test_api_hammered_during_kill_9_chaos_changes_no_run_invariant(
    env: dict[str, str],
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    db: DatabaseConnection,
    spawn: Spawn,
) -> None:
    seed = int(os.environ.get("FAULTS_SEED") or time.time())
    rng = random.Random(seed)
    print(f"\nchaos seed {seed} (FAULTS_SEED={seed} replays the same kills)")
    schedules = insert_interval_schedules(
        database_url, SCHEDULES, seconds=PERIOD, job_type="python", payload=NOOP
    )
    trigger_targets = insert_interval_schedules(
        database_url, 20, seconds=3600, job_type="python", payload=NOOP, domain="trigger.example"
    )
    token = make_token(db, "chaos-clients", "admin")
    base = engine_env(
        env,
        LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
        HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}",
        SCHEDULE_CHECK_INTERVAL=f"{SCHEDULE_CHECK_INTERVAL:g}",
        MAX_WORKERS="10",
    )
    ports = {f"inst-{n}": free_port() for n in range(3)}
    environs = {name: {**base, "HTTP_PORT": str(port)} for name, port in ports.items()}
    slots: dict[str, DaemonProcess] = {name: spawn(environs[name], name) for name in ports}
    start_all(slots.values())
    window_start = db_now(database_url)

    urls = [f"http://127.0.0.1:{port}" for port in ports.values()]
    case_ids = [str(s["schedule_id"]) for s in schedules]
    clients = [
        ApiClient(urls, token, case_ids, [str(t["schedule_id"]) for t in trigger_targets], seed + n)
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        chaos = kill_loop(
            slots,
            lambda name, n: spawn(environs[name], name, log_name=f"{name}-{n}").start(timeout=60),
            duration=DURATION,
            quiet_tail=LOCK_TIMEOUT + CHECK_INTERVAL + 3,
            rng=rng,
            database_url=database_url,
        )
    finally:
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(30)
    window_end = db_now(database_url)
    tallies = [c.tally for c in clients]
    triggers = [r for t in tallies for r in t.triggers]

    # Triggers accepted late in the run are resolved by the instances still up.
    def unresolved() -> list[Any]:
        return query(
            database_url,
            "SELECT request_id, claimed_by FROM run_requests "
            "WHERE request_id = ANY(%s::uuid[]) AND done_at IS NULL",
            (triggers,),
        )

    wait_until(lambda: not unresolved(), 30, 0.25, "every accepted trigger resolved")

    report = check_invariants(
        CaseRecord(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            lock_timeout=LOCK_TIMEOUT,
            check_interval=CHECK_INTERVAL,
            heartbeat_ttl=3 * HEARTBEAT,
            endings=chaos.stop(slots, database_url),
            schedules=schedules,
            period=PERIOD,
            healthy=[(window_start, window_end)],
            daemons=chaos.every,
        )
    )

    statuses = sum((t.statuses for t in tallies), Counter[int]())
    latencies_ms = [x * 1000 for t in tallies for x in t.latencies]
    requests_sent = sum(statuses.values())
    print(f"kills (instance, seconds down): {chaos.kills}")
    print(f"case 9 runs: {report}")
    print(
        f"case 9 API: {requests_sent} answers {dict(sorted(statuses.items()))}, "
        f"{sum(t.unreachable for t in tallies)} refused by a killed instance, "
        f"{sum(t.cut_off for t in tallies)} cut off by a kill; latency "
        f"p50 {percentile(latencies_ms, 50):.0f} ms, p99 {percentile(latencies_ms, 99):.0f} ms; "
        f"{len(triggers)} triggers"
    )

    unexpected = [line for t in tallies for line in t.unexpected]
    assert not unexpected, f"{len(unexpected)} unexpected answers:\n" + "\n".join(unexpected[:20])
    assert requests_sent >= CLIENTS * DURATION, "the clients barely ran"

    uncertain = {sid for t in tallies for sid in t.uncertain}
    live = {sid: cfg for t in tallies for sid, cfg in t.live.items() if sid not in uncertain}
    deleted = {sid for t in tallies for sid in t.deleted}
    stored = {
        str(row["schedule_id"]): row["time_config"]
        for row in query(
            database_url,
            "SELECT schedule_id, time_config FROM schedules WHERE domain = %s",
            (API_DOMAIN,),
        )
    }
    assert not deleted & set(stored), "a schedule deleted with 204 is back"
    lost = {sid: cfg for sid, cfg in live.items() if stored.get(sid) != cfg}
    assert not lost, f"acknowledged writes not stored as acknowledged: {lost}"
    unknown = set(stored) - set(live) - uncertain
    assert len(unknown) <= sum(t.uncertain_creates for t in tallies), (
        f"schedules nobody created are stored: {unknown}"
    )

    # A request's occurrence is its requested_at: one row each, whoever ran it, however many
    # instances claimed it (a claimant killed before resolving it hands it back via the reaper).
    requests = query(
        database_url,
        "SELECT r.request_id, r.result, r.claimed_by, e.status, e.trigger FROM run_requests r "
        "LEFT JOIN job_executions e ON e.schedule_id = r.schedule_id "
        "AND e.scheduled_for = r.requested_at AND e.attempt = 1 "
        "WHERE r.request_id = ANY(%s::uuid[])",
        (triggers,),
    )
    assert len(requests) == len(triggers), "an accepted trigger is missing from run_requests"
    print(
        f"case 9 triggers: {len(requests)} accepted, rows {Counter(r['status'] for r in requests)}"
    )
    without_row = [r for r in requests if r["trigger"] != "manual"]
    assert not without_row, f"{len(without_row)} accepted triggers have no row: {without_row[:5]}"
