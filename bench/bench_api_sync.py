"""API sync throughput: `python -m bench.bench_api_sync`.

Serves N items (seed-001 shape, mixed frequencies, non-UUID ids) from a local HTTP server and
times `ApiSync.sync()` end to end (fetch, parse, validate, plan, one transaction): into an
empty table, then again unchanged, then with a tenth of the items changed. Targets (issue 7):
5,000 items into an empty table under 3 s, an unchanged re-sync under 1 s.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    Record,
    bench_database,
    figure,
    print_table,
    scale,
    scheduler_logs,
)
from database.connection import DatabaseConnection
from services.store.schedules import ScheduleRepository
from services.sync.client import ApiClient
from services.sync.sync import ApiSync
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse

_SCHEDULES: tuple[dict[str, Any], ...] = (
    {"frequency": "daily", "time": {"hour": 2, "minute": 30}},
    {"frequency": "weekly", "time": {"days": ["mon", "thu"], "hour": 6}},
    {"frequency": "cron", "time": {"expression": "15 3 * * 1-5"}, "timezone": "Europe/Berlin"},
    {"frequency": "interval", "time": {"hours": 6}},
    {"frequency": "monthly", "time": {"day": "last", "hour": 1}},
    {"frequency": "hourly", "time": {"minute": 7}, "jitter": 30},
)


def items(n: int, *, version: int = 0, changed_every: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        changed = bool(changed_every) and i % changed_every == 0
        out.append(
            {
                "domain_config_id": f"cfg-{i}",
                "data": {
                    "domain": f"site-{i}.example.com",
                    "description": f"Example domain {i}",
                    "allow_deep_scan": i % 2 == 0,
                    "maxPages": 50 + (version if changed else 0),
                    "scanDepth": 5,
                    "customPages": ["/page1", f"/page{i}"],
                    "schedule": _SCHEDULES[i % len(_SCHEDULES)],
                },
            }
        )
    return out


def _timed_sync(sync: ApiSync, server: RecordingHTTPServer, answer: list[Any]) -> tuple[float, Any]:
    server.enqueue(ScriptedResponse(200, {"data": answer}))
    started = time.perf_counter()
    result = sync.sync()
    return time.perf_counter() - started, result


def run() -> list[Record]:
    n = scale(5000, 500)
    records: list[Record] = []
    with bench_database() as url, scheduler_logs(), RecordingHTTPServer() as server:
        db = DatabaseConnection(url, min_size=1, max_size=2)
        try:
            client = ApiClient(server.url, timeout=30)
            sync = ApiSync(ScheduleRepository(db), client, disable_missing=True)
            first, result = _timed_sync(sync, server, items(n))
            assert result.counts["created"] == n, result.counts
            again, result = _timed_sync(sync, server, items(n))
            assert result.counts["skipped"] == n, result.counts
            tenth, result = _timed_sync(sync, server, items(n, version=1, changed_every=10))
            assert result.counts["updated"] == n // 10, result.counts
        finally:
            db.close()
    records.append(
        figure(
            f"api sync: {n:,} items into an empty table",
            round(first, 3),
            "s",
            n,
            target="< 3 s",
            ok=first < 3,
        )
    )
    records.append(
        figure(
            f"api sync: {n:,} items, unchanged re-sync",
            round(again, 3),
            "s",
            n,
            target="< 1 s",
            ok=again < 1,
        )
    )
    records.append(figure(f"api sync: {n:,} items, a tenth changed", round(tenth, 3), "s", n))
    return records


if __name__ == "__main__":
    print_table(run())
