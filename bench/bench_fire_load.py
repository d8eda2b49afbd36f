"""What a sustained fire rate costs PostgreSQL and Redis (issue 20, docs/scaling.md):
`python -m bench.bench_fire_load` (`make bench-fire-load`).

One daemon (`scheduler.py run`, MAX_WORKERS=10, no-op python jobs) holds K interval schedules
firing every second, K in RATES; then two daemons hold the same K, which is what an occurrence
costs when two owners fire it (SHARD_REPLICAS=2: the lock picks one). They talk to a
redis-server of their own on a spare port, so that the server's CPU and command count are theirs
alone; PostgreSQL is the shared server, its work read from the backends serving the bench
database. After a warm-up, a window of WINDOW seconds measures:
- fires/s: rows completed in the window per second (what the daemon sustained, not what was due);
- CPU in cores: the daemons and their PostgreSQL backends (/proc), the redis-server (its INFO);
- per fire: PostgreSQL commits and WAL bytes (the server's WAL position, so anyone else's writes
  in the window count too: an upper bound), Redis commands;
- and the same scaled to 1,000 fires/s, which is how docs/scaling.md sizes a deployment.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from psycopg.types.json import Jsonb

from bench.bench_watcher import daemon_subprocess
from bench.common import Record, bench_database, figure, print_table, scale
from bench.probes import backend_pids, cpu_window
from tests.support.redis_server import RedisServer

RATES = (scale(200, 50), scale(500, 100))
CASES = (*((k, 1) for k in RATES), (RATES[-1], 2))  # (schedules, daemons)
WARM_UP = 8.0  # seconds: the first bursts, the pool's connections, the heap settled
WINDOW = float(scale(30, 10))
START_TIMEOUT = 120.0
# A real module's function: the in-process benches' registered "noop" does not exist in a
# spawned daemon.
NOOP_PAYLOAD = {"callable": "tests.support.handler_funcs:noop"}


@dataclass(frozen=True)
class Counters:
    """What the servers had counted at one moment."""

    at: float
    commits: int
    wal_lsn: int
    redis_commands: int
    redis_cpu: float  # the server's own count (INFO cpu), finer than /proc's ticks
    completed: int


def _counters(conn: psycopg.Connection[Any], client: redis.Redis) -> Counters:
    row = conn.execute(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
        " pg_current_wal_lsn() - '0/0'::pg_lsn,"
        " (SELECT count(*) FROM job_executions WHERE status = 'completed')"
    ).fetchone()
    assert row is not None
    commands = int(client.info("stats")["total_commands_processed"])
    cpu = client.info("cpu")
    redis_cpu = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    return Counters(time.monotonic(), int(row[0]), int(row[1]), commands, redis_cpu, int(row[2]))


def _insert_every_second(url: str, k: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type,"
            " payload, created_at)"
            " SELECT gen_random_uuid(), 'load-' || n || '.example.com', 'interval',"
            " '{\"seconds\": 1}', 'python', %s, now() - interval '1 hour'"
            " FROM generate_series(1, %s) AS n",
            (Jsonb(NOOP_PAYLOAD), k),
        )


def measure(k: int, daemons: int) -> list[Record]:
    with bench_database() as url, RedisServer() as server, ExitStack() as stack:
        _insert_every_second(url, k)
        client = redis.Redis.from_url(server.url)
        stack.callback(client.close)
        settings = {
            "REDIS_URL": server.url,
            "MAX_WORKERS": 10,
            "SCHEDULE_CHECK_INTERVAL": 5,
            "PYTHON_HANDLER_ALLOWLIST": "tests.support.handler_funcs",
        }
        spawned = [
            stack.enter_context(daemon_subprocess(url, START_TIMEOUT, **settings))
            for _ in range(daemons)
        ]
        conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        time.sleep(WARM_UP)
        groups = {"daemon": [d.proc.pid for d in spawned], "postgresql": backend_pids(url)}
        before = _counters(conn, client)
        with cpu_window(groups) as cpu:
            time.sleep(WINDOW)
        after = _counters(conn, client)
    seconds = after.at - before.at
    fires = after.completed - before.completed
    rate = fires / seconds
    per_k = 1000 / rate if rate else float("nan")  # scales a figure at `rate` to 1,000 fires/s
    per_fire = max(1, fires)
    redis_cores = (after.redis_cpu - before.redis_cpu) / seconds
    measured: list[tuple[str, float, str]] = [
        ("fires completed per second", round(rate, 1), "fires/s"),
        ("daemon CPU (all of them)", cpu.cores["daemon"], "cores"),
        ("PostgreSQL backends CPU", cpu.cores["postgresql"], "cores"),
        ("redis-server CPU", round(redis_cores, 3), "cores"),
        ("daemon CPU per 1,000 fires/s", round(cpu.cores["daemon"] * per_k, 2), "cores"),
        ("PostgreSQL CPU per 1,000 fires/s", round(cpu.cores["postgresql"] * per_k, 2), "cores"),
        ("Redis CPU per 1,000 fires/s", round(redis_cores * per_k, 3), "cores"),
        ("PostgreSQL commits per fire", round((after.commits - before.commits) / per_fire, 2), ""),
        (
            "WAL per fire (server-wide, an upper bound)",
            round((after.wal_lsn - before.wal_lsn) / per_fire),
            "bytes",
        ),
        (
            "Redis commands per fire",
            round((after.redis_commands - before.redis_commands) / per_fire, 2),
            "",
        ),
        ("machine busy", cpu.machine, "share of all cores"),
    ]
    plural = "s" if daemons > 1 else ""
    return [
        figure(
            f"fire load ({k} schedules every 1 s, {daemons} daemon{plural}): {name}", value, unit, k
        )
        for name, value, unit in measured
    ]


def run() -> list[Record]:
    records: list[Record] = []
    for k, daemons in CASES:
        records.extend(measure(k, daemons))
    return records


if __name__ == "__main__":
    print_table(run())
