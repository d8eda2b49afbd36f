"""The load mix of issue 19: schedules whose configurations differ row by row, as a new user's do.

`insert_schedules` (common.py) repeats a few configurations, so the parse cache shares their
objects and a loaded schedule looks cheaper than it is. Here, seeded: 40 % crons of ten shapes
with random fields, 20 % daily, 10 % weekly and 10 % monthly at random hours and minutes, 20 %
intervals of random length; four time zones; every row its own domain and payload; and every
`start_date` two days ahead, so that nothing fires while a benchmark runs and `next_run` is
still a real computation for each row.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import NOOP_HANDLER

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Draw = Callable[[random.Random], str]

# Ten cron shapes; each draws its own fields.
CRON_SHAPES: tuple[Draw, ...] = (
    lambda r: f"{r.randrange(60)} {r.randrange(24)} * * *",
    lambda r: f"{r.randrange(60)} {r.randrange(24)} * * 1-5",
    lambda r: f"{r.randrange(60)} */{r.choice((2, 3, 4, 6, 8, 12))} * * *",
    lambda r: f"*/{r.choice((5, 10, 15, 20, 30))} {r.randrange(8, 18)}-{r.randrange(18, 24)} * * *",
    lambda r: f"{r.randrange(60)} {r.randrange(24)} {r.randrange(1, 29)} * *",
    lambda r: f"{r.randrange(60)} {r.randrange(24)} * * {r.randrange(7)}",
    lambda r: f"{r.randrange(60)} {r.randrange(12)},{r.randrange(12, 24)} * * *",
    lambda r: f"{r.randrange(60)} {r.randrange(60)} {r.randrange(24)} * * *",  # seconds first
    lambda r: f"{r.randrange(60)} {r.randrange(24)} 1-{r.randrange(7, 15)} */{r.choice((2, 3))} *",
    lambda r: f"H {r.randrange(24)} * * {r.randrange(1, 6)}#{r.randrange(1, 5)}",
)


def time_config(rng: random.Random, start: datetime) -> tuple[str, dict[str, object]]:
    """One row's (frequency, time_config), drawn from the mix."""
    zone, roll = rng.choice(ZONES), rng.random()
    common: dict[str, object] = {"timezone": zone, "start_date": start.isoformat()}
    hour, minute = rng.randrange(24), rng.randrange(60)
    if roll < 0.4:
        return "cron", {"expression": rng.choice(CRON_SHAPES)(rng), **common}
    if roll < 0.6:
        return "daily", {"hour": hour, "minute": minute, **common}
    if roll < 0.7:
        days = [_DAYS[d] for d in sorted(rng.sample(range(7), rng.randint(1, 3)))]
        return "weekly", {"days": days, "hour": hour, "minute": minute, **common}
    if roll < 0.8:
        day: object = "last" if rng.random() < 0.1 else rng.randrange(1, 29)
        return "monthly", {"day": day, "hour": hour, "minute": minute, **common}
    return "interval", {"seconds": rng.randrange(60, 7 * 86400), **common}


def insert_load_mix(database_url: str, n: int, *, seed: int = 19) -> float:
    """COPY `n` schedules of the mix (python no-op jobs, each with its own payload); returns the
    seconds it took, VACUUM ANALYZE included."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(days=2)
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=False) as conn, conn.cursor() as cur:
        columns = "domain_config_id, domain, frequency, time_config, job_type, payload, created_at"
        with cur.copy(f"COPY schedules ({columns}) FROM STDIN") as copy:
            for i in range(n):
                frequency, config = time_config(rng, start)
                domain = f"site-{i}-{rng.randrange(10**6)}.example.org"
                payload = {"callable": NOOP_HANDLER, "target": domain, "depth": rng.randrange(5)}
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        domain,
                        frequency,
                        json.dumps(config),
                        "python",
                        json.dumps(payload),
                        now - timedelta(seconds=rng.randrange(86400 * 30)),
                    )
                )
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE schedules")
    return time.perf_counter() - started
