"""Command spawns per second (issue 19): `python -m bench.bench_spawn`.

The command handler runs `true` (`CommandHandler.run`, output pipes and reader threads
included) from 10 threads, as the daemon's workers would:
- before: the handler as it was, with a `preexec_fn` setting PR_SET_PDEATHSIG (CPython then
  fork()s the whole process, page tables and all, for every run);
- after: the handler as it is (vfork(), a new session, the warden's lifeline, each run
  announced to the warden and forgotten);
- after, without the warden: the same spawn with no lifeline and no messages, for its cost;
next to the floor of a bare `subprocess.run(["true"])` from the same 10 threads, measured in the
same run. Each at the process's normal size, then with it grown by a 400 MB bytearray that is
written to (so that its pages are really mapped). Every figure is the median of ROUNDS rounds,
the variants taking turns within a round, with the load average beside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import structlog

from bench.common import Record, figure, print_table, quiet_logging, scale
from services.engine.handlers import CommandHandler, JobContext
from services.engine.handlers.warden import CommandWarden
from services.model.vocabulary import ExecutionStatus

THREADS = 10
RUNS = scale(600, 60)  # per variant and round
ROUNDS = scale(3, 1)
WARM_UP = 2 * THREADS
GROWN_MB = 400
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _NoWarden(CommandWarden):
    """No lifeline, no messages: what a spawn costs without the warden."""

    def check_supported(self) -> None:
        pass

    def lifeline(self) -> tuple[int, ...]:
        return ()

    def watch(self, sid: int) -> None:
        pass

    def forget(self, sid: int) -> None:
        pass


def _parent_death_signal(parent_pid: int) -> Callable[[], None]:
    """The preexec_fn of the handler before issue 19, as it was."""

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _HandlerBefore(CommandHandler):
    def _spawn(
        self, argv: list[str], executable: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            executable=executable,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            preexec_fn=_parent_death_signal(os.getpid()),
        )


def _context() -> JobContext:
    return JobContext(
        execution_id=uuid4(),
        schedule_id=uuid4(),
        domain_config_id=uuid4(),
        domain="bench.example.com",
        profile_id=None,
        scheduled_for=datetime.now(UTC),
        attempt=1,
        job_type="command",
        payload={"argv": ["true"]},
        timeout=30.0,
        cancel_event=threading.Event(),
        log=structlog.get_logger("bench.spawn"),
    )


def _handler_run(handler: CommandHandler) -> Callable[[], None]:
    def once() -> None:
        outcome = handler.run(_context())
        if outcome.status is not ExecutionStatus.COMPLETED:
            raise RuntimeError(f"`true` did not complete: {outcome}")

    return once


def bare_run() -> None:
    subprocess.run(["true"], check=True)


def spawn_rate(once: Callable[[], None], runs: int) -> float:
    """Runs per second of `once`, called `runs` times in all from THREADS threads."""
    tickets = itertools.count()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while next(tickets) < runs:
                once()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, name=f"bench-spawn-{i}") for i in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return runs / elapsed


def _rss_mb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def _measure(variants: dict[str, Callable[[], None]], size: str) -> list[Record]:
    for once in variants.values():
        spawn_rate(once, WARM_UP)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, once in variants.items():
            rates[name].append(spawn_rate(once, RUNS))
    rss = _rss_mb()
    return [
        figure(
            f"spawn `true`, {THREADS} threads, {name}, {size}",
            round(statistics.median(values), 1),
            "runs/s",
            RUNS,
            note=f"RSS {rss} MB; rounds {', '.join(f'{v:.0f}' for v in values)}",
        )
        for name, values in rates.items()
    ]


def run() -> list[Record]:
    if sys.platform != "linux":
        raise RuntimeError("bench_spawn measures Linux process creation")
    warden = CommandWarden()
    variants = {
        "bare subprocess.run floor": bare_run,
        "before (preexec_fn)": _handler_run(_HandlerBefore(allowlist=["true"], warden=_NoWarden())),
        "after (vfork + warden)": _handler_run(CommandHandler(allowlist=["true"], warden=warden)),
        "after, no warden": _handler_run(CommandHandler(allowlist=["true"], warden=_NoWarden())),
    }
    try:
        records = _measure(variants, "normal size")
        ballast = bytearray(b"\x01") * (GROWN_MB << 20)
        records += _measure(variants, f"grown by {GROWN_MB} MB")
        del ballast
    finally:
        warden.close()
    return records


if __name__ == "__main__":
    quiet_logging()
    print_table(run())
