-- name: claim_occurrences
-- Claim many (schedule, occurrence, attempt) at once (a JSON array, one object per claim): insert a 'running'
-- row with a fresh fencing number, or take over a 'skipped' row. The second branch recognises
-- our own claim when a lost answer made us send it twice. An execution_id missing from the
-- answer lost its occurrence to someone else. Rows go in key order, so two batches that share
-- keys wait for each other instead of deadlocking.
WITH wanted AS (
    SELECT * FROM jsonb_to_recordset(%(claims)s::jsonb) AS w(
        execution_id uuid, schedule_id uuid, job_id text, domain text, domain_config_id uuid,
        scheduled_for timestamptz, attempt int, trigger text)
), claimed AS (
    INSERT INTO job_executions (
        execution_id, schedule_id, job_id, domain, domain_config_id, status, started_at,
        scheduled_for, attempt, instance_id, fencing_token, trigger)
    SELECT execution_id, schedule_id, job_id, domain, domain_config_id, 'running', now(),
           scheduled_for, attempt, %(instance_id)s, nextval('job_fencing_seq'), trigger
    FROM wanted
    ORDER BY schedule_id, scheduled_for, attempt
    ON CONFLICT (schedule_id, scheduled_for, attempt) DO UPDATE
    SET execution_id = EXCLUDED.execution_id, job_id = EXCLUDED.job_id, status = 'running',
        started_at = now(), completed_at = NULL, duration_seconds = NULL, scan_id = NULL,
        error_message = NULL, metadata = NULL,
        error_details = jsonb_build_object('took_over_skipped', job_executions.error_message),
        instance_id = EXCLUDED.instance_id, fencing_token = EXCLUDED.fencing_token,
        trigger = EXCLUDED.trigger
    WHERE job_executions.status = 'skipped'
    RETURNING execution_id, fencing_token, started_at
)
SELECT execution_id, fencing_token, started_at FROM claimed
UNION ALL
SELECT j.execution_id, j.fencing_token, j.started_at
FROM job_executions j JOIN wanted USING (execution_id)
WHERE j.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.execution_id = j.execution_id);

-- name: record_skipped
-- Record an occurrence that was due but not run; never displaces another run's row. The one row
-- it takes over is a 'running' row under this very execution_id: our own claim, whose answer was
-- lost with the connection (it committed after all), and whose run never started.
INSERT INTO job_executions (
    execution_id, schedule_id, job_id, domain, domain_config_id, status, started_at,
    completed_at, duration_seconds, scheduled_for, attempt, instance_id, trigger,
    error_message, error_details)
VALUES (
    %(execution_id)s, %(schedule_id)s, %(job_id)s, %(domain)s, %(domain_config_id)s, 'skipped',
    now(), now(), 0, %(scheduled_for)s, %(attempt)s, %(instance_id)s, %(trigger)s,
    %(error_message)s, %(error_details)s)
ON CONFLICT (schedule_id, scheduled_for, attempt) DO UPDATE
SET status = 'skipped', completed_at = now(), duration_seconds = 0,
    error_message = EXCLUDED.error_message, error_details = EXCLUDED.error_details
WHERE job_executions.execution_id = EXCLUDED.execution_id AND job_executions.status = 'running'
RETURNING execution_id;

-- name: finish_executions
-- Final writes of many runs (a JSON array, one object per run), fenced: only our own still-running rows, and a schedule's last_*
-- only when no newer fencing number has been recorded for it (the newest of the batch wins).
WITH outcome AS (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb) AS o(
        execution_id uuid, fencing_token bigint, status text, duration_seconds float8,
        scan_id uuid, error_message text, error_details jsonb, metadata jsonb,
        next_run timestamptz)
), finished AS (
    UPDATE job_executions j
    SET status = o.status, completed_at = now(), duration_seconds = o.duration_seconds,
        scan_id = o.scan_id, error_message = o.error_message,
        -- a run that waited (queued) keeps saying why it waited
        error_details = CASE WHEN j.error_details ? 'queued_because'
            THEN jsonb_build_object('queued_because', j.error_details -> 'queued_because')
                 || coalesce(o.error_details, '{}'::jsonb)
            ELSE o.error_details END,
        metadata = o.metadata
    FROM outcome o
    WHERE j.execution_id = o.execution_id AND j.status = 'running'
      AND j.fencing_token = o.fencing_token
    RETURNING j.execution_id, j.schedule_id, j.started_at, o.fencing_token, o.status,
              o.error_message, o.next_run
), newest AS (
    SELECT DISTINCT ON (schedule_id) * FROM finished ORDER BY schedule_id, fencing_token DESC
), schedule AS (
    UPDATE schedules s
    SET last_run = n.started_at, last_status = n.status, last_error = n.error_message,
        next_run = n.next_run, last_fencing_token = n.fencing_token
    FROM newest n
    WHERE s.schedule_id = n.schedule_id
      AND (s.last_fencing_token IS NULL OR s.last_fencing_token < n.fencing_token)
    RETURNING n.execution_id
)
SELECT o.execution_id,
       EXISTS (SELECT 1 FROM finished f WHERE f.execution_id = o.execution_id)
           AS execution_written,
       EXISTS (SELECT 1 FROM schedule s WHERE s.execution_id = o.execution_id)
           AS schedule_written
FROM outcome o;

-- name: abandon_instance_rows
-- At start-up: rows an earlier process left 'running' under this INSTANCE_ID.
UPDATE job_executions
SET status = 'abandoned', completed_at = now(),
    duration_seconds = extract(epoch FROM now() - started_at), error_message = %(reason)s
WHERE status = 'running' AND instance_id = %(instance_id)s
RETURNING execution_id, schedule_id;

-- name: running_rows_of_others
-- Running rows of other instances, for the reaper.
SELECT execution_id, schedule_id, instance_id, scheduled_for, attempt, started_at
FROM job_executions
WHERE status = 'running' AND instance_id IS DISTINCT FROM %(instance_id)s;

-- name: abandon_execution
-- Mark one still-running row abandoned, saying why.
UPDATE job_executions
SET status = 'abandoned', completed_at = now(),
    duration_seconds = extract(epoch FROM now() - started_at), error_message = %(reason)s
WHERE execution_id = %(execution_id)s AND status = 'running'
RETURNING execution_id;

-- name: get_profile_settings
-- A scan profile's settings, merged under a job's payload.
SELECT settings FROM scan_profiles WHERE profile_id = %(profile_id)s;

-- name: occurrence_row
-- The row of (schedule, occurrence, attempt), if it has one: its id and status.
SELECT execution_id, status FROM job_executions
WHERE schedule_id = %(schedule_id)s AND scheduled_for = %(scheduled_for)s
  AND attempt = %(attempt)s;

-- name: occurrence_exists
-- Whether (schedule, occurrence, attempt) has a row, whatever its status.
SELECT EXISTS (
    SELECT 1 FROM job_executions
    WHERE schedule_id = %(schedule_id)s AND scheduled_for = %(scheduled_for)s
      AND attempt = %(attempt)s
) AS found;

-- name: orphaned_retries
-- Failed attempts of the last day that earned a retry (retryable, lock not lost) whose next
-- attempt has no row yet: on a live instance that retry waits in its memory; on a dead one it
-- was lost with it. The caller keeps the rows of dead instances (and its own at start-up).
SELECT f.execution_id, f.schedule_id, f.scheduled_for, f.attempt, f.instance_id, f.completed_at
FROM job_executions f
WHERE f.status IN ('failed', 'timed_out')
  AND f.started_at > now() - interval '1 day'
  AND f.schedule_id IS NOT NULL
  AND f.error_details @> '{"retryable": true}'
  AND NOT f.error_details @> '{"lock_lost": true}'
  AND NOT EXISTS (
      SELECT 1 FROM job_executions n
      WHERE n.schedule_id = f.schedule_id AND n.scheduled_for = f.scheduled_for
        AND n.attempt = f.attempt + 1);

-- name: lock_schedule_queue
-- Serialise the writers of one schedule's queue for the rest of the transaction (the
-- buffer limit is counted, then kept, by whoever holds it).
SELECT pg_advisory_xact_lock(8008, hashtext(%(schedule_id)s::text)) AS locked;

-- name: queued_count
-- How many live (not backfill) occurrences of one schedule wait as 'queued'.
SELECT count(*) AS waiting FROM job_executions
WHERE schedule_id = %(schedule_id)s AND status = 'queued' AND trigger <> 'backfill';

-- name: queued_counts
-- The same for many schedules at once (those absent wait for nothing).
SELECT schedule_id, count(*) AS waiting FROM job_executions
WHERE schedule_id = ANY(%(schedule_ids)s::uuid[]) AND status = 'queued'
  AND trigger <> 'backfill'
GROUP BY schedule_id;

-- name: queue_occurrence
-- Record an occurrence as 'queued' (waiting for an earlier run), fenced like a claim; takes
-- over a 'skipped' row as a claim does, never any other row.
INSERT INTO job_executions (
    execution_id, schedule_id, job_id, domain, domain_config_id, status, started_at,
    scheduled_for, attempt, instance_id, fencing_token, trigger, error_message, error_details)
VALUES (
    %(execution_id)s, %(schedule_id)s, %(job_id)s, %(domain)s, %(domain_config_id)s, 'queued',
    now(), %(scheduled_for)s, %(attempt)s, %(instance_id)s, nextval('job_fencing_seq'),
    %(trigger)s, %(error_message)s, %(error_details)s)
ON CONFLICT (schedule_id, scheduled_for, attempt) DO UPDATE
SET execution_id = EXCLUDED.execution_id, status = 'queued', started_at = now(),
    completed_at = NULL, duration_seconds = NULL, instance_id = EXCLUDED.instance_id,
    fencing_token = EXCLUDED.fencing_token, trigger = EXCLUDED.trigger,
    error_message = EXCLUDED.error_message, error_details = EXCLUDED.error_details
WHERE job_executions.status = 'skipped'
RETURNING execution_id;

-- name: queue_heads
-- The queue's heads: per schedule, its waiting rows in order (live occurrences before a
-- backfill's, then by occurrence), the first %(heads)s of each, with how many backfill runs of
-- the schedule are going.
WITH waiting AS (
    SELECT execution_id, schedule_id, scheduled_for, attempt, trigger, job_id,
           row_number() OVER (
               PARTITION BY schedule_id ORDER BY (trigger = 'backfill'), scheduled_for, attempt
           ) AS place
    FROM job_executions
    WHERE status = 'queued' AND schedule_id IS NOT NULL
)
SELECT w.*,
       (SELECT count(*) FROM job_executions r
        WHERE r.schedule_id = w.schedule_id AND r.status = 'running'
          AND r.trigger = 'backfill') AS backfill_running
FROM waiting w
WHERE w.place <= %(heads)s
ORDER BY w.place, w.scheduled_for
LIMIT %(limit)s;

-- name: start_queued
-- A queued row becomes 'running' for the instance holding its schedule's lock: a fresh fencing
-- number, started now. Only one instance can: the row must still be 'queued'.
UPDATE job_executions
SET status = 'running', started_at = now(), instance_id = %(instance_id)s,
    fencing_token = nextval('job_fencing_seq'), error_message = NULL,
    error_details = jsonb_build_object('queued_because', error_message)
WHERE execution_id = %(execution_id)s AND status = 'queued'
RETURNING execution_id, fencing_token, started_at;

-- name: drop_queued
-- A queued row whose schedule is gone or disabled: recorded skipped, saying why.
UPDATE job_executions
SET status = 'skipped', completed_at = now(), duration_seconds = 0,
    error_message = %(reason)s
WHERE execution_id = %(execution_id)s AND status = 'queued'
RETURNING execution_id;

-- name: occurrence_attempts
-- A backfill's view of one schedule's occurrences in [start, end): per occurrence its latest
-- attempt and that attempt's status, and whether any row of it ran (or is running or queued).
SELECT scheduled_for, max(attempt) AS latest_attempt,
       (array_agg(status ORDER BY attempt DESC))[1] AS latest_status,
       bool_or(status <> 'skipped') AS ran
FROM job_executions
WHERE schedule_id = %(schedule_id)s AND scheduled_for >= %(start)s AND scheduled_for < %(end)s
GROUP BY scheduled_for;

-- name: queue_backfill
-- A backfill's occurrences (a JSON array), each a 'queued' row with trigger 'backfill', fenced;
-- one that already has a row at that attempt (a concurrent backfill) is left alone.
WITH wanted AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS w(
        execution_id uuid, scheduled_for timestamptz, attempt int)
)
INSERT INTO job_executions (
    execution_id, schedule_id, job_id, domain, domain_config_id, status, started_at,
    scheduled_for, attempt, instance_id, fencing_token, trigger, error_message)
SELECT execution_id, %(schedule_id)s, %(job_id)s, %(domain)s, %(domain_config_id)s, 'queued',
       now(), scheduled_for, attempt, %(instance_id)s, nextval('job_fencing_seq'), 'backfill',
       %(reason)s
FROM wanted
ORDER BY scheduled_for, attempt
ON CONFLICT (schedule_id, scheduled_for, attempt) DO NOTHING
RETURNING execution_id, scheduled_for, attempt;
