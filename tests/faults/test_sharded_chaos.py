"""Case 13, the sharded case (issue 20, acceptance 4): case 1's kill -9 loop over FOUR
instances with SCHEDULER_SHARDS=8 and SHARD_REPLICAS=2, 200 schedules every second. Each
instance loads only its 4 of the 8 shards (half the schedules). LOCK_TIMEOUT=3 (the shard
leases' length, as in tests/integration/test_shards.py) rather than case 1's 5: a killed
instance that stays away more than about 2 s (plus its start-up) comes back after its leases
lapsed, so the survivors take its shards and hand them back when it has loaded them again;
one back sooner takes its own leases again, under its INSTANCE_ID.

Case 1's invariants all hold: nothing runs twice (rows and `run.started` in the logs);
nothing due while an instance lived is lost (every shard keeps its other loaded owner while
one is dead, so the whole run is one healthy window); no row stays `running` beyond
LOCK_TIMEOUT + check interval (3 + 4 s) after its instance died; every result logged as
written is stored; no lock key outlives its TTL; no process is left behind.
"""

from __future__ import annotations

import pytest

from tests.faults.chaos import kill_chaos_case
from tests.faults.common import Spawn, scaled
from tests.support.schedules import query

DURATION = scaled(60)
SHARDS, REPLICAS, INSTANCES, LOCK_TIMEOUT = 8, 2, 4, 3.0


@pytest.mark.timeout(int(150 + 2 * DURATION))
def test_kill_9_chaos_over_sharded_instances_loses_nothing_and_runs_nothing_twice(
    env: dict[str, str], database_url: str, redis_url: str, redis_prefix: str, spawn: Spawn
) -> None:
    report = kill_chaos_case(
        "case 13 (sharded)",
        env,
        database_url,
        redis_url,
        redis_prefix,
        spawn,
        duration=DURATION,
        instances=INSTANCES,
        lock_timeout=LOCK_TIMEOUT,
        SCHEDULER_SHARDS=str(SHARDS),
        SHARD_REPLICAS=str(REPLICAS),
    )
    by_instance = {r["instance_id"] for r in report.rows}
    assert by_instance == {f"inst-{n}" for n in range(INSTANCES)}  # every instance fired its part
    # Every instance stopped gracefully at the end or died and its leases lapsed: none is left.
    assert query(database_url, "SELECT count(*) AS n FROM scheduler_members")[0]["n"] == 0
