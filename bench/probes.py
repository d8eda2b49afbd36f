"""Where the time goes while a benchmark runs: CPU of processes, of the machine and of the
database's backends, how long a Python thread that wakes up waits before it runs, and the
garbage collector's pauses in this process.

The wake-up probe is a thread that sleeps 1 ms at a time and records how much longer each sleep
took. In the process under test, the excess is the wait for the GIL plus the wait for a core;
in a process of its own (`separate=True`), which holds no other thread, it is the wait for a
core alone. The difference is what the process's own threads cost each other.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent

import psycopg

from bench.common import cpu_seconds

SLEEP = 0.001


def backend_pids(url: str) -> list[int]:
    """The client backends connected to the database of `url` (not this query's own)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot (/proc/stat; idle and iowait are idle)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _cpu_of(pids: Sequence[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):  # gone: it counts for nothing
            continue
    return out


@dataclass
class CpuWindow:
    """CPU used between `start()` and `stop()`, per named group of processes, in cores (CPU
    seconds per wall second); `machine` is the busy share of all cores, anyone's work."""

    groups: Mapping[str, Sequence[int]]
    wall: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    _started: tuple[float, dict[str, dict[int, float]], tuple[int, int]] | None = None

    def start(self) -> None:
        before = {name: _cpu_of(pids) for name, pids in self.groups.items()}
        self._started = (time.monotonic(), before, _machine_jiffies())

    def stop(self) -> None:
        assert self._started is not None
        began, before, (busy0, total0) = self._started
        after = {name: _cpu_of(pids) for name, pids in self.groups.items()}
        busy1, total1 = _machine_jiffies()
        self.wall = time.monotonic() - began
        for name, at_start in before.items():
            spent = sum(
                after[name][pid] - cpu for pid, cpu in at_start.items() if pid in after[name]
            )
            self.cores[name] = round(spent / self.wall, 2) if self.wall > 0 else float("nan")
        self.machine = round((busy1 - busy0) / max(1, total1 - total0), 2)


@contextmanager
def cpu_window(groups: Mapping[str, Sequence[int]]) -> Iterator[CpuWindow]:
    window = CpuWindow(groups)
    window.start()
    try:
        yield window
    finally:
        window.stop()


def _sleep_excess(stop: threading.Event | ProcessEvent, delays: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        time.sleep(SLEEP)
        delays.append(time.perf_counter() - started - SLEEP)


def _probe_process(stop: ProcessEvent, out: Connection) -> None:
    delays: list[float] = []
    _sleep_excess(stop, delays)
    out.send(delays)
    out.close()


@dataclass
class WakeupDelays:
    delays: list[float] = field(default_factory=list)  # seconds a 1 ms sleep overran


@contextmanager
def wakeup_probe(*, separate: bool = False) -> Iterator[WakeupDelays]:
    """Sleep-overrun samples for the duration of the block: on a thread of this process, or
    (`separate`) in a process of its own."""
    result = WakeupDelays()
    if not separate:
        stop = threading.Event()
        thread = threading.Thread(
            target=_sleep_excess, args=(stop, result.delays), name="bench-wakeup-probe"
        )
        thread.start()
        try:
            yield result
        finally:
            stop.set()
            thread.join()
        return
    context = multiprocessing.get_context("spawn")
    process_stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_probe_process, args=(process_stop, sender), name="bench-wakeup-probe", daemon=True
    )
    process.start()
    try:
        yield result
    finally:
        process_stop.set()
        if receiver.poll(30):
            result.delays.extend(receiver.recv())
        process.join(10)


@dataclass
class GcPauses:
    """Collections of this process's garbage collector, as (generation, seconds); every thread
    of the process waits while one runs."""

    pauses: list[tuple[int, float]] = field(default_factory=list)

    def longest(self, generation: int | None = None) -> float:
        return max(
            (s for g, s in self.pauses if generation is None or g == generation), default=0.0
        )


@contextmanager
def gc_pauses() -> Iterator[GcPauses]:
    result = GcPauses()
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            result.pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(callback)
    try:
        yield result
    finally:
        gc.callbacks.remove(callback)
