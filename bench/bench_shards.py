"""Shards at scale (issue 20, acceptance 3): one instance holding every schedule against four
sharded instances, on the varied load mix.

`python -m bench.bench_shards` (`make bench-shards`; not in `make bench`: it is long). N schedules
of `load_mix.py` (BENCH_SHARDS_N, default 100,000; 10,000 with BENCH_QUICK=1) are inserted once
into a template database; each set-up starts from its own copy of it and its own Redis prefix:
- A: one `scheduler.py run`, SCHEDULER_SHARDS=1 (it holds all);
- B: four, SCHEDULER_SHARDS=64, SHARD_REPLICAS=2, spawned together.
Per set-up: start-up (A: spawn to `scheduler.started`; B: spawn to every shard leased and loaded
by exactly the two owners the assignment names, `scheduler_shards.loaded_at`), next_run complete
(no enabled row without one), per instance RSS after load, jobs loaded, CPU seconds during
start-up of the daemon (/proc/PID/stat) and of the PostgreSQL backends serving it (its sockets'
local ports -> pg_stat_activity.client_port -> backend pid -> /proc/pid/stat), then 30 s of
steady state CPU (daemon and backends, per instance). For B then: `kill -9` of one instance,
the time until every shard is back to its two loaded owners among the survivors, and the
survivors' RSS and jobs after it. LOCK_TIMEOUT=5, HEARTBEAT_INTERVAL=1.

Backend CPU is sampled every POLL seconds: a backend that exits between two samples loses what
it spent since the last one (the daemons keep their pools' connections, so this is rare).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.bench_memory import memory_mb
from bench.bench_watcher import spawn_scheduler
from bench.common import (
    REDIS_URL,
    Record,
    bench_database,
    clone_database,
    cpu_seconds,
    figure,
    load_average,
    print_table,
    quiet_logging,
    redis_prefix,
    scale,
    write_results,
)
from bench.load_mix import insert_load_mix
from services.engine.liveness import instance_summaries
from services.lock.client import create_redis_client
from services.model.shards import assign

N = int(os.environ.get("BENCH_SHARDS_N") or scale(100_000, 10_000))
SHARDS, REPLICAS, INSTANCES = 64, 2, 4
LOCK_TIMEOUT, HEARTBEAT_INTERVAL = 5, 1
TIMING: dict[str, object] = {
    "LOCK_TIMEOUT": LOCK_TIMEOUT,
    "HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
    "SCHEDULE_CHECK_INTERVAL": 60,  # the default: steady state with the watcher's own passes
}
STEADY_S = 30.0
POLL = 0.2
START_TIMEOUT = 1800.0
SUMMARY_TIMEOUT = 15.0
STOP_TIMEOUT = 120.0

LIVE_LEASES = (
    "SELECT shard, instance_id, loaded_at IS NOT NULL FROM scheduler_shards"
    " WHERE lease_until > now()"
)
BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND client_port = ANY(%s)"
)


@dataclass
class Instance:
    """One `scheduler.py run` of a set-up, and what was sampled of it."""

    instance_id: str
    proc: subprocess.Popen[bytes]
    spawned: float
    started: dict[str, Any] | None = None
    started_after: float | None = None
    error: BaseException | None = None
    backends: dict[int, float] = field(default_factory=dict)  # backend pid -> CPU s last seen
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def watch(self) -> None:
        """Read its JSON log (stderr) in a thread: when scheduler.started came, and each
        shards.* event (by name, with when it came), until the daemon exits."""

        def read() -> None:
            assert self.proc.stderr is not None
            try:
                for line in self.proc.stderr:
                    if b"shards." not in line and b"scheduler.started" not in line:
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    name = str(event.get("event", ""))
                    if name == "scheduler.started" and self.started is None:
                        self.started_after = time.perf_counter() - self.spawned
                        self.started = event
                    elif name.startswith("shards."):
                        self.events.append((time.perf_counter(), name, event))
            except BaseException as exc:  # read by check() in the main thread
                self.error = exc

        threading.Thread(target=read, name=f"log-{self.instance_id}", daemon=True).start()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"{self.instance_id}: {self.error}") from self.error
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.instance_id} exited ({self.proc.returncode})")

    def backend_cpu(self) -> float:
        return sum(self.backends.values())


@dataclass
class Loaded:
    """What a set-up's start-up measured."""

    at: float  # perf_counter() when it was loaded
    loaded_s: float
    next_run_s: float
    rss_mb: dict[str, float]
    daemon_cpu: dict[str, float]
    pg_cpu: dict[str, float]


def run() -> list[Record]:
    print(
        f"bench_shards: N={N:,}; "
        + " ".join(f"{k}={v}" for k, v in TIMING.items())
        + f"; B: {INSTANCES} instances, SCHEDULER_SHARDS={SHARDS}, SHARD_REPLICAS={REPLICAS}",
        flush=True,
    )
    records: list[Record] = []
    with bench_database() as template:
        inserted = insert_load_mix(template, N)
        records.append(figure("load mix: COPY + VACUUM ANALYZE", round(inserted, 1), "s", N))
        with clone_database(template) as url:
            records += one_instance(url)
        with clone_database(template) as url:
            records += four_sharded(url)
    return records


# -- the set-ups --------------------------------------------------------------------------------


def one_instance(url: str) -> list[Record]:
    tag = "A 1 instance (S=1)"
    instances: list[Instance] = []
    with redis_prefix() as prefix, psycopg.connect(url, autocommit=True) as conn:
        try:
            instances = spawn(url, prefix, ["bench-shards-a"], SCHEDULER_SHARDS=1)
            loaded = wait_loaded(conn, instances, sharded=False)
            print(f"bench_shards: A loaded in {loaded.loaded_s:.2f}s", flush=True)
            jobs = {i.instance_id: int((i.started or {}).get("jobs_loaded", -1)) for i in instances}
            steady = steady_cpu(conn, instances)
        finally:
            stop_all(instances)
    records = [
        figure(
            f"{tag}: start-up, spawn to scheduler.started",
            round(loaded.loaded_s, 2),
            "s",
            N,
            note=_timing_note(),
        ),
        figure(f"{tag}: next_run complete, from spawn", round(loaded.next_run_s, 2), "s", N),
    ]
    records += instance_figures(tag, loaded, jobs, steady, expected_jobs={"bench-shards-a": N})
    return records


def four_sharded(url: str) -> list[Record]:
    tag = f"B {INSTANCES} instances (S={SHARDS}, R={REPLICAS})"
    ids = [f"bench-shards-b{k}" for k in range(1, INSTANCES + 1)]
    sharding = {"SCHEDULER_SHARDS": SHARDS, "SHARD_REPLICAS": REPLICAS}
    instances: list[Instance] = []
    redis = create_redis_client(REDIS_URL, max_connections=2)
    with redis_prefix() as prefix, psycopg.connect(url, autocommit=True) as conn:
        try:
            per_shard = shard_sizes(conn)
            instances = spawn(url, prefix, ids, **sharding)
            loaded = wait_loaded(conn, instances, sharded=True)
            last_started = max(i.started_after or float("nan") for i in instances)
            print(f"bench_shards: B settled in {loaded.loaded_s:.2f}s", flush=True)
            leases_taken = leases_so_far(conn)
            jobs = loaded_jobs(conn, redis, prefix, ids)
            steady = steady_cpu(conn, instances)
            victim, survivors = instances[0], instances[1:]
            killed, rebalanced = kill_and_rebalance(conn, victim, survivors)
            rebalance_s = rebalanced - killed
            leases_moved = leases_so_far(conn) - leases_taken
            print(f"bench_shards: B rebalanced in {rebalance_s:.2f}s after kill -9", flush=True)
            after_rss = {i.instance_id: memory_mb(i.pid)["VmRSS"] for i in survivors}
            after_jobs = loaded_jobs(conn, redis, prefix, [i.instance_id for i in survivors])
        finally:
            stop_all(instances)
            redis.close()
    expected = expected_jobs(assign(SHARDS, ids, REPLICAS), per_shard)
    survivors_ids = [i.instance_id for i in survivors]
    expected_after = expected_jobs(assign(SHARDS, survivors_ids, REPLICAS), per_shard)
    records = [
        figure(
            f"{tag}: start-up, spawn to every shard loaded by its {REPLICAS} owners",
            round(loaded.loaded_s, 2),
            "s",
            N,
            note=_timing_note(),
        ),
        figure(f"{tag}: spawn to the last scheduler.started", round(last_started, 2), "s", N),
        figure(f"{tag}: next_run complete, from spawn", round(loaded.next_run_s, 2), "s", N),
        figure(
            f"{tag}: leases taken until settled",
            leases_taken,
            "leases",
            N,
            note=f"{SHARDS * REPLICAS} if no shard moved during the start-up",
        ),
    ]
    records += instance_figures(tag, loaded, jobs, steady, expected_jobs=expected)
    records += event_figures(f"{tag}: start-up", instances, 0.0, loaded.at)
    records += event_figures(f"{tag}: steady state", instances, loaded.at, killed)
    records.append(
        figure(
            f"{tag}: kill -9 of {victim.instance_id} to every shard on {REPLICAS} loaded survivors",
            round(rebalance_s, 2),
            "s",
            N,
            # No bound of its own at this size: the survivors' loads of the dead one's rows
            # come on top of the lease (tests/integration/test_shards.py holds the 8 x 2 case
            # with 300 rows to LOCK_TIMEOUT + 3 heartbeats).
            note=f"LOCK_TIMEOUT {LOCK_TIMEOUT} s + a round + the longest load (below)",
        )
    )
    records.append(
        figure(
            f"{tag}: leases taken in the rebalance",
            leases_moved,
            "leases",
            N,
            note="about a quarter of the owner slots (32) when only the dead one's move",
        )
    )
    records += event_figures(f"{tag}: rebalance", survivors, killed, rebalanced)
    for iid, rss in after_rss.items():
        records.append(figure(f"{tag}: {iid} RSS after the rebalance", round(rss, 1), "MB", N))
    records.append(
        figure(f"{tag}: survivors' RSS after the rebalance, max", _max(after_rss), "MB", N)
    )
    for iid, count in after_jobs.items():
        records.append(
            _jobs_figure(f"{tag}: {iid} jobs after the rebalance", count, expected_after)
        )
    return records


def instance_figures(
    tag: str,
    loaded: Loaded,
    jobs: Mapping[str, int],
    steady: Mapping[str, tuple[float, float]],
    *,
    expected_jobs: Mapping[str, int],
) -> list[Record]:
    records: list[Record] = []
    for iid in loaded.rss_mb:
        records += [
            figure(f"{tag}: {iid} RSS after load", round(loaded.rss_mb[iid], 1), "MB", N),
            _jobs_figure(f"{tag}: {iid} jobs loaded", jobs.get(iid, -1), expected_jobs),
            figure(f"{tag}: {iid} start-up CPU, daemon", round(loaded.daemon_cpu[iid], 2), "s", N),
            figure(
                f"{tag}: {iid} start-up CPU, its PostgreSQL backends",
                round(loaded.pg_cpu[iid], 2),
                "s",
                N,
            ),
            figure(
                f"{tag}: {iid} steady CPU over {STEADY_S:g} s, daemon",
                round(steady[iid][0], 2),
                "s",
                N,
            ),
            figure(
                f"{tag}: {iid} steady CPU over {STEADY_S:g} s, its PostgreSQL backends",
                round(steady[iid][1], 2),
                "s",
                N,
            ),
        ]
    records.append(figure(f"{tag}: RSS after load, max", _max(loaded.rss_mb), "MB", N))
    if len(loaded.rss_mb) > 1:
        records += [
            figure(f"{tag}: RSS after load, sum", round(sum(loaded.rss_mb.values()), 1), "MB", N),
            figure(f"{tag}: jobs loaded, sum", sum(jobs.values()), "jobs", N),
            figure(
                f"{tag}: start-up CPU, all daemons",
                round(sum(loaded.daemon_cpu.values()), 2),
                "s",
                N,
            ),
            figure(
                f"{tag}: start-up CPU, all their PostgreSQL backends",
                round(sum(loaded.pg_cpu.values()), 2),
                "s",
                N,
            ),
            figure(
                f"{tag}: steady CPU over {STEADY_S:g} s, all daemons",
                round(sum(d for d, _ in steady.values()), 2),
                "s",
                N,
            ),
            figure(
                f"{tag}: steady CPU over {STEADY_S:g} s, all their PostgreSQL backends",
                round(sum(p for _, p in steady.values()), 2),
                "s",
                N,
            ),
        ]
    return records


def _jobs_figure(name: str, count: int, expected: Mapping[str, int]) -> Record:
    iid = name.split(": ", 1)[1].split(" ", 1)[0]
    want = expected.get(iid)
    return figure(
        name,
        count,
        "jobs",
        N,
        target=None if want is None else f"= {want:,} (the rows of its shards)",
        ok=None if want is None else count == want,
    )


def _max(values: Mapping[str, float]) -> float:
    return round(max(values.values(), default=float("nan")), 1)


def _timing_note() -> str:
    return " ".join(f"{k}={v}" for k, v in TIMING.items())


# -- processes ----------------------------------------------------------------------------------


def spawn(url: str, prefix: str, ids: Sequence[str], **overrides: object) -> list[Instance]:
    """Spawn one daemon per id, back to back, each watched for its scheduler.started line."""
    instances: list[Instance] = []
    try:
        for iid in ids:
            spawned = time.perf_counter()
            proc = spawn_scheduler(url, prefix, INSTANCE_ID=iid, **TIMING, **overrides)
            instances.append(Instance(iid, proc, spawned))
    except BaseException:
        stop_all(instances)
        raise
    for instance in instances:
        instance.watch()
    return instances


def stop_all(instances: Iterable[Instance]) -> None:
    """SIGTERM to each daemon still running (by its PID), then wait; SIGKILL after STOP_TIMEOUT."""
    running = [i for i in instances if i.proc.poll() is None]
    for instance in running:
        instance.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for instance in running:
        try:
            instance.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"bench_shards: {instance.instance_id} did not stop, killed", file=sys.stderr)
            instance.proc.kill()
            instance.proc.wait()


# -- measuring ----------------------------------------------------------------------------------


def wait_loaded(
    conn: psycopg.Connection[Any], instances: list[Instance], *, sharded: bool
) -> Loaded:
    """Poll until every daemon has started (and, sharded, every shard has exactly its assigned
    loaded owners) and next_run is complete; RSS and CPU are read at the first of the two."""
    spawned = min(i.spawned for i in instances)
    ids = [i.instance_id for i in instances]
    deadline = time.monotonic() + START_TIMEOUT
    loaded: Loaded | None = None
    next_run_s: float | None = None
    while loaded is None or next_run_s is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"start-up not done within {START_TIMEOUT:g}s")
        for instance in instances:
            instance.check()
        sample_backends(conn, instances)
        now = time.perf_counter() - spawned
        if next_run_s is None and next_run_complete(conn):
            next_run_s = now
        if (
            loaded is None
            and all(i.started is not None for i in instances)
            and (not sharded or settled(conn, ids))
        ):
            loaded = Loaded(
                at=time.perf_counter(),
                loaded_s=now if sharded else max(i.started_after or now for i in instances),
                next_run_s=float("nan"),
                rss_mb={i.instance_id: memory_mb(i.pid)["VmRSS"] for i in instances},
                daemon_cpu={i.instance_id: cpu_seconds(i.pid) for i in instances},
                pg_cpu={i.instance_id: i.backend_cpu() for i in instances},
            )
        time.sleep(POLL)
    loaded.next_run_s = next_run_s
    return loaded


def next_run_complete(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM schedules WHERE enabled AND next_run IS NULL)"
    ).fetchone()
    return bool(row and row[0])


def settled(conn: psycopg.Connection[Any], ids: Sequence[str]) -> bool:
    """Every shard leased by exactly the owners `assign` names over `ids`, each marked loaded."""
    wanted = {k: set(owners) for k, owners in assign(SHARDS, ids, REPLICAS).items()}
    held: dict[int, set[str]] = {k: set() for k in range(SHARDS)}
    for shard, instance_id, loaded in conn.execute(LIVE_LEASES).fetchall():
        if not loaded:
            return False
        held.setdefault(shard, set()).add(instance_id)
    return held == wanted


def steady_cpu(
    conn: psycopg.Connection[Any], instances: list[Instance]
) -> dict[str, tuple[float, float]]:
    """CPU seconds over STEADY_S of each daemon and of its backends (sampled each second)."""
    sample_backends(conn, instances)
    daemon0 = {i.instance_id: cpu_seconds(i.pid) for i in instances}
    backends0 = {i.instance_id: dict(i.backends) for i in instances}
    end = time.monotonic() + STEADY_S
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        for instance in instances:
            instance.check()
        sample_backends(conn, instances)
    out: dict[str, tuple[float, float]] = {}
    for i in instances:
        before = backends0[i.instance_id]
        pg = sum(cpu - before.get(pid, 0.0) for pid, cpu in i.backends.items())
        out[i.instance_id] = (cpu_seconds(i.pid) - daemon0[i.instance_id], pg)
    return out


def kill_and_rebalance(
    conn: psycopg.Connection[Any], victim: Instance, survivors: list[Instance]
) -> tuple[float, float]:
    """kill -9 `victim`; when (perf_counter) it was killed and when every shard was on its
    assigned loaded survivors."""
    ids = [i.instance_id for i in survivors]
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.perf_counter()
    victim.proc.wait()
    deadline = time.monotonic() + START_TIMEOUT
    while not settled(conn, ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no rebalance within {START_TIMEOUT:g}s of the kill")
        for instance in survivors:
            instance.check()
        time.sleep(POLL / 2)
    return killed, time.perf_counter()


# The keeper's log events counted per phase: loads and drops, and the signs of a round that
# outlasted its leases (a lease that lapsed under its holder, a failed round).
EVENTS = (
    "shards.taken",
    "shards.dropped",
    "shards.leases_retaken",
    "shards.lapsed_dropped",
    "shards.round_failed",
)


def event_figures(
    phase: str, instances: Sequence[Instance], since: float, until: float
) -> list[Record]:
    """How many of each EVENTS the instances logged in [since, until), and the longest load."""
    records = [
        figure(
            f"{phase}: {name} events",
            sum(1 for i in instances for at, e, _ in i.events if e == name and since <= at < until),
            "events",
            N,
        )
        for name in EVENTS
    ]
    loads = [
        float(fields.get("duration_s", 0.0))
        for i in instances
        for at, name, fields in i.events
        if name == "shards.taken" and since <= at < until
    ]
    if loads:
        records.append(figure(f"{phase}: longest shards.taken load", max(loads), "s", N))
    return records


def sample_backends(conn: psycopg.Connection[Any], instances: list[Instance]) -> None:
    """Each running daemon's PostgreSQL backends now, and their CPU seconds so far."""
    for instance in instances:
        if instance.proc.poll() is not None:
            continue
        ports = client_ports(instance.pid, conn.info.port)
        if not ports:
            continue
        for (pid,) in conn.execute(BACKENDS, (sorted(ports),)).fetchall():
            try:
                instance.backends[pid] = cpu_seconds(pid)
            except OSError:  # gone since the query
                continue


def client_ports(pid: int, server_port: int) -> set[int]:
    """Local TCP ports of `pid`'s sockets connected to `server_port` (/proc/PID/fd and
    /proc/PID/net/tcp{,6}: a socket's inode names its line there)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as lines:
                rows = lines.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def leases_so_far(conn: psycopg.Connection[Any]) -> int:
    """How many shard leases were ever taken: each draws its epoch from this sequence."""
    row = conn.execute(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM scheduler_shard_epochs"
    ).fetchone()
    return int(row[0]) if row else 0


def shard_sizes(conn: psycopg.Connection[Any]) -> dict[int, int]:
    rows = conn.execute(
        "SELECT scheduler_shard(schedule_id, %s), count(*) FROM schedules WHERE enabled GROUP BY 1",
        (SHARDS,),
    ).fetchall()
    return {int(shard): int(count) for shard, count in rows}


def expected_jobs(
    assignment: Mapping[int, Sequence[str]], sizes: Mapping[int, int]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for shard, owners in assignment.items():
        for owner in owners:
            out[owner] = out.get(owner, 0) + sizes.get(shard, 0)
    return out


def loaded_jobs(
    conn: psycopg.Connection[Any], redis: Any, prefix: str, ids: Sequence[str]
) -> dict[str, int]:
    """jobs_loaded of each instance, from the summary its heartbeat keeps in Redis, once that
    summary shows the shards PostgreSQL has it loading (bounded wait; -1 if it never does)."""
    deadline = time.monotonic() + SUMMARY_TIMEOUT
    while True:
        leases: dict[str, list[int]] = {iid: [] for iid in ids}
        for shard, instance_id, loaded in conn.execute(LIVE_LEASES).fetchall():
            if loaded and instance_id in leases:
                leases[instance_id].append(shard)
        summaries = {s["instance_id"]: s for s in instance_summaries(redis, prefix)}
        current = {
            iid: int(summaries[iid].get("jobs_loaded", -1))
            for iid in ids
            if iid in summaries
            and sorted(summaries[iid].get("shards", {}).get("owned", [])) == sorted(leases[iid])
            and not summaries[iid].get("shards", {}).get("loading")
        }
        if len(current) == len(ids) or time.monotonic() > deadline:
            return {iid: current.get(iid, -1) for iid in ids}
        time.sleep(0.25)


def main() -> None:
    started = time.perf_counter()
    quiet_logging()
    print(f"bench_shards: load average {load_average()}", flush=True)
    records = run()
    duration = time.perf_counter() - started
    print()
    print_table(records)
    path = write_results(records, duration_s=duration, module="bench_shards")
    print(f"\nbench_shards: {len(records)} figures in {duration:.0f}s, written to {path}")


if __name__ == "__main__":
    main()
