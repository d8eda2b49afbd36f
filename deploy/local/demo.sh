#!/usr/bin/env bash
# `make demo`: a daemon on a demo database, three example schedules (one every 10 s running an
# allowlisted command, one daily, one invalid on purpose), then status, validate and history.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
export DATABASE_URL="${DEMO_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/enhanced_scheduler_demo}"
export COMMAND_ALLOWLIST=echo INSTANCE_ID=demo HTTP_PORT=0 SCHEDULE_CHECK_INTERVAL=5 LOG_FORMAT=json
export REDIS_KEY_PREFIX="${REDIS_KEY_PREFIX:-demo:}"
log=$(mktemp -t enhanced-scheduler-demo.XXXXXX.log)

$PY -m database.bootstrap
echo "== removing the previous demo's schedules"
psql "$DATABASE_URL" -qc "DELETE FROM schedules WHERE domain LIKE '%.demo'" >/dev/null

echo "== starting the daemon (log: $log)"
$PY scheduler.py run >"$log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '"scheduler.started"' "$log" && break; sleep 0.2; done

echo "== adding schedules"
every10=$($PY scheduler.py add --domain-config-id "$($PY -c 'import uuid; print(uuid.uuid4())')" \
  --domain every10s.demo --frequency interval --time-config '{"seconds": 10}' \
  --job-type command --payload '{"argv": ["echo", "hello from the demo"]}' --json \
  | $PY -c 'import json, sys; print(json.load(sys.stdin)["schedule_id"])')
daily=$($PY scheduler.py add --domain-config-id "$($PY -c 'import uuid; print(uuid.uuid4())')" \
  --domain daily.demo --frequency daily --time-config '{"hour": 2, "minute": 30}' --json \
  | $PY -c 'import json, sys; print(json.load(sys.stdin)["schedule_id"])')
# The CLI refuses invalid schedules, so the broken one goes in by SQL, as a person might write it.
psql "$DATABASE_URL" -qc "INSERT INTO schedules (domain_config_id, domain, frequency, time_config)
  VALUES (gen_random_uuid(), 'broken.demo', 'daily', '{\"hour\": 25}')" >/dev/null

echo "== waiting for a completed run (up to 30 s)"
for _ in $(seq 1 150); do
  if $PY scheduler.py history --schedule "$every10" --status completed --json | grep -q '"completed"'; then break; fi
  sleep 0.2
done

echo; echo "== python scheduler.py status"; $PY scheduler.py status || true
echo; echo "== python scheduler.py validate"; $PY scheduler.py validate || true
echo; echo "== python scheduler.py history --schedule $every10"; $PY scheduler.py history --schedule "$every10"
echo; echo "== the daily schedule"; $PY scheduler.py show "$daily" | grep -E 'domain|next_run|upcoming'
