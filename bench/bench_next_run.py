"""next_run for 100,000 schedules of mixed frequencies: `python -m bench.bench_next_run`.

The rows are what a large install might hold: about a quarter cron (a few hundred distinct
expressions, some with seconds), intervals, daily/weekly/monthly/hourly jobs and a few one-offs,
across ten zones (40% UTC), one in five with jitter. Parsing (validation included) is timed
separately from next_run, which is what the watcher and APScheduler compute. Each next_run figure
is the best of three passes (the machine is shared), except the very first pass; the last one is
the watcher's poll an hour later, which crosses Europe's spring-forward gap.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from services.model.fire_times import next_fire_time
from services.model.spec import ScheduleSpec, parse_schedule

ROWS = 100_000
NOW = datetime(2026, 3, 28, 23, 17, 41, 250_000, tzinfo=UTC)  # the eve of Europe's DST change
ZONES = [
    "UTC", "UTC", "UTC", "UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo",
    "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles", "Europe/London",
    "Australia/Lord_Howe",
]  # fmt: skip
DAYS = ["mon", "tue", "wednesday", "thu", "Friday", "sat", "sun"]

Row = tuple[str, str, dict[str, object], datetime]


def _cron_pool(rng: random.Random) -> list[str]:
    fixed = ["*/5 * * * *", "0 9 * * 1-5", "*/15 8-18 * * mon-fri", "0 0 1 * *", "0 */6 * * *"]
    daily = [f"{rng.randrange(60)} {rng.randrange(24)} * * *" for _ in range(150)]
    hourly = [f"{rng.randrange(60)} * * * *" for _ in range(60)]
    weekdays = [f"{rng.randrange(60)} {rng.randrange(24)} * * 1-5" for _ in range(60)]
    seconds = [f"{rng.randrange(60)} */10 * * * *" for _ in range(10)]
    return fixed * 20 + daily + hourly + weekdays + seconds


def make_rows(n: int = ROWS, seed: int = 20260328) -> list[Row]:
    rng = random.Random(seed)
    crons = _cron_pool(rng)
    rows: list[Row] = []
    for index in range(n):
        draw = rng.random()
        config: dict[str, object]
        if draw < 0.25:
            frequency, config = "cron", {"expression": rng.choice(crons)}
        elif draw < 0.45:
            frequency, config = (
                "interval",
                {rng.choice(["seconds", "minutes", "hours"]): 1 + rng.randrange(90)},
            )
        elif draw < 0.65:
            frequency, config = "daily", {"hour": rng.randrange(24), "minute": rng.randrange(60)}
        elif draw < 0.75:
            frequency, config = "hourly", {"minute": rng.randrange(60)}
        elif draw < 0.85:
            days = rng.sample(DAYS, rng.randint(1, 3))
            frequency, config = "weekly", {"days": days, "hour": rng.randrange(24)}
        elif draw < 0.95:
            day = rng.choice([1, 15, 28, 31, "last"])
            frequency, config = "monthly", {"day": day, "hour": rng.randrange(24)}
        else:
            run_at = NOW + timedelta(seconds=rng.randrange(-86_400, 30 * 86_400))
            frequency, config = "once", {"run_at": run_at.replace(microsecond=0).isoformat()}
        config["timezone"] = rng.choice(ZONES)
        if rng.random() < 0.2:
            # An interval's jitter must stay below its period.
            units = {"seconds": 1, "minutes": 60, "hours": 3600}
            period = sum(units[k] * v for k, v in config.items() if k in units) or 300
            if min(300, period) > 1:
                config["jitter"] = rng.randrange(1, min(300, period))
        created_at = NOW - timedelta(seconds=rng.randrange(1, 400 * 86_400))
        rows.append((f"00000000-0000-4000-8000-{index:012d}", frequency, config, created_at))
    return rows


def _next_runs(specs: list[ScheduleSpec], now: datetime, repeat: int = 3) -> tuple[float, int]:
    """The best of `repeat` passes, as timeit does: other processes share this machine."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        scheduled = sum(next_fire_time(spec, None, now) is not None for spec in specs)
        timings.append(time.perf_counter() - started)
    return min(timings), scheduled


def run() -> list[dict[str, object]]:
    rows = make_rows()
    started = time.perf_counter()
    specs = [
        parse_schedule(frequency, config, schedule_id=schedule_id, created_at=created_at)
        for schedule_id, frequency, config, created_at in rows
    ]
    parse_seconds = time.perf_counter() - started
    cold, _ = _next_runs(specs, NOW, repeat=1)  # cron engines not used yet for this `now`
    first, scheduled = _next_runs(specs, NOW)
    again, _ = _next_runs(specs, NOW + timedelta(hours=1))
    n = len(specs)
    figures = [
        (f"parse + validate {n:,} mixed schedules", parse_seconds, "s"),
        (f"next_run for {n:,} mixed schedules, first pass", cold, "s"),
        (f"next_run for {n:,} mixed schedules", first, "s"),
        (f"next_run for {n:,} mixed schedules, next poll (+1 h)", again, "s"),
        ("schedules with a next_run (the rest are past one-offs)", scheduled, "rows"),
    ]
    return [
        {"figure": figure, "value": round(value, 3), "unit": unit, "n": n}
        for figure, value, unit in figures
    ]


if __name__ == "__main__":
    for result in run():
        print(f"{result['figure']}: {result['value']} {result['unit']}")
