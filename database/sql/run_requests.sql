-- name: insert_request
-- A CLI request for the live daemons.
INSERT INTO run_requests (kind, schedule_id, execution_id, reason)
VALUES (%(kind)s, %(schedule_id)s, %(execution_id)s, %(reason)s)
RETURNING *;

-- name: get_request
-- One request by id.
SELECT * FROM run_requests WHERE request_id = %(request_id)s;

-- name: claim_trigger
-- Claim the oldest unclaimed trigger request (one instance only, thanks to SKIP LOCKED). With
-- shards (`owned` not NULL), one of a shard we own, or any once it waited `route_grace` seconds
-- (its owners are all down or busy: the run is the same whoever starts it).
UPDATE run_requests SET claimed_by = %(instance_id)s, claimed_at = now()
WHERE request_id = (
    SELECT request_id FROM run_requests
    WHERE kind = 'trigger' AND done_at IS NULL AND claimed_by IS NULL
      AND (%(owned)s::int[] IS NULL
           OR scheduler_shard(schedule_id, %(shards)s) = ANY(%(owned)s::int[])
           OR requested_at < now() - make_interval(secs => %(route_grace)s))
    ORDER BY requested_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: open_claimants
-- Other instances holding trigger requests they have not resolved (the reaper checks they live).
SELECT DISTINCT claimed_by FROM run_requests
WHERE kind = 'trigger' AND done_at IS NULL AND claimed_by IS NOT NULL
  AND claimed_by <> %(instance_id)s;

-- name: release_claims
-- Hand the unresolved trigger requests of dead claimants back to every instance. Run twice,
-- a request still runs once: its occurrence is its requested_at (job_executions' unique key).
UPDATE run_requests SET claimed_by = NULL, claimed_at = NULL
WHERE kind = 'trigger' AND done_at IS NULL AND claimed_by = ANY(%(instance_ids)s::text[])
RETURNING request_id;

-- name: open_cancels_for
-- Cancel requests aimed at runs this instance is running.
SELECT * FROM run_requests
WHERE kind = 'cancel' AND done_at IS NULL AND execution_id = ANY(%(execution_ids)s::uuid[]);

-- name: complete_request
-- Record what became of a request.
UPDATE run_requests
SET done_at = now(), result = %(result)s, execution_id = coalesce(%(execution_id)s, execution_id),
    claimed_by = coalesce(claimed_by, %(instance_id)s), claimed_at = coalesce(claimed_at, now())
WHERE request_id = %(request_id)s;

-- name: prune_requests
-- Forget requests older than a day.
DELETE FROM run_requests WHERE requested_at < now() - interval '1 day';

-- name: insert_triggers
-- Trigger requests for many schedules at once (a bulk trigger, inside its transaction).
INSERT INTO run_requests (kind, schedule_id)
SELECT 'trigger', id FROM unnest(%(schedule_ids)s::uuid[]) AS t (id)
RETURNING request_id;
