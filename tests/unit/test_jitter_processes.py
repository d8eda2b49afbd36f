"""Every instance computes the same fire times for the same rows, jitter included: two processes
with different hash seeds (Python's `hash()` of str differs between them) must agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from services.model.fire_times import fire_times
from services.model.spec import parse_schedule

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    ("0b6c1b9e-1", "cron", {"expression": "*/5 * * * *", "jitter": 120}),
    (
        "0b6c1b9e-2",
        "cron",
        {"expression": "0 9 * * 1-5", "jitter": 900, "timezone": "Europe/Berlin"},
    ),
    ("0b6c1b9e-3", "interval", {"seconds": 30, "jitter": 25}),
    (
        "0b6c1b9e-4",
        "daily",
        {"hour": 2, "minute": 30, "jitter": 3600, "timezone": "America/New_York"},
    ),
    ("0b6c1b9e-5", "hourly", {"minute": 45, "jitter": 59, "timezone": "Australia/Lord_Howe"}),
    ("0b6c1b9e-6", "weekly", {"days": ["mon", "fri"], "hour": 6, "jitter": 86400}),
    ("0b6c1b9e-7", "monthly", {"day": "last", "hour": 23, "jitter": 7}),
    ("0b6c1b9e-8", "once", {"run_at": "2026-12-01T10:00:00+00:00", "jitter": 600}),
]

SCRIPT = """
import json, sys
from datetime import datetime
from services.model.spec import parse_schedule
from services.model.fire_times import fire_times
rows = json.loads(sys.argv[1])
created = datetime.fromisoformat("2026-03-01T08:15:07+00:00")
now = datetime.fromisoformat("2026-03-28T20:00:00+00:00")
out = {}
for schedule_id, frequency, config in rows:
    spec = parse_schedule(frequency, config, schedule_id=schedule_id, created_at=created)
    out[schedule_id] = [t.isoformat() for t in fire_times(spec, None, now, 12)]
print(json.dumps({"hash": hash("salted?"), "fires": out}))
"""


def _run(seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(ROWS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_two_processes_compute_the_same_fire_times() -> None:
    first, second = _run("1"), _run("2")
    assert first["hash"] != second["hash"]  # the processes really differ in str hashing
    assert first["fires"] == second["fires"]
    fires = first["fires"]
    assert isinstance(fires, dict) and len(fires) == len(ROWS)
    assert all(len(times) == (1 if key.endswith("-8") else 12) for key, times in fires.items())
    # ...and this process (a third hash seed) agrees with them.
    created = datetime.fromisoformat("2026-03-01T08:15:07+00:00")
    now = datetime.fromisoformat("2026-03-28T20:00:00+00:00")
    for schedule_id, frequency, config in ROWS:
        spec = parse_schedule(frequency, config, schedule_id=schedule_id, created_at=created)
        assert [t.isoformat() for t in fire_times(spec, None, now, 12)] == fires[schedule_id]
