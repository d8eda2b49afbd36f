"""`python -m bench` (`make bench`): every benchmark of the project, one table, bench/results.json.

Each module's `run()` returns figures (dicts with figure, value, unit, n, and optionally target
and ok). A module that fails is reported and the others still run; the exit code is then 1.
BENCH_QUICK=1 scales the sizes down for a smoke run. Missing a target does not fail the command:
the table says so in its `ok` column.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.common import (
    QUICK,
    Record,
    load_average,
    print_table,
    quiet_logging,
    write_results,
)

# Every bench/bench_*.py with a run(): these first, in this order (the long ones last), then
# any other in name order.
ORDER = ("bench_next_run", "bench_lock", "bench_api_sync", "bench_watcher", "bench_engine")
# Run only on their own (each has a make target): too long for the suite.
SEPARATE = frozenset({"bench_shards"})


def modules() -> list[str]:
    present = {p.stem for p in Path(__file__).resolve().parent.glob("bench_*.py")} - SEPARATE
    return [m for m in ORDER if m in present] + sorted(present - set(ORDER))


def main() -> int:
    started = time.perf_counter()
    quiet_logging()  # the benchmarks' own debug lines would drown the table
    print(f"bench: {'quick' if QUICK else 'full'} run, load average {load_average()}", flush=True)
    records: list[Record] = []
    failed: list[str] = []
    for name in modules():
        module = importlib.import_module(f"bench.{name}")
        if not callable(getattr(module, "run", None)):
            print(f"bench: {name} has no run(), skipped", flush=True)
            continue
        module_started = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        try:
            results = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        for record in results:
            record.setdefault("load", load_average())
            records.append({"module": name, **record})
        print(f"bench: {name} done in {time.perf_counter() - module_started:.1f}s", flush=True)
    duration = time.perf_counter() - started
    print()
    print_table(records)
    path = write_results(records, duration_s=duration)
    print(f"\nbench: {len(records)} figures in {duration:.0f}s, written to {path}")
    if failed:
        print(f"bench: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
