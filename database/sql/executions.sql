-- name: claim_occurrence
-- Claim (schedule, occurrence, attempt) for this run: insert a 'running' row with a fresh fencing
-- number, or take over a 'skipped' row. The second branch recognises our own claim when a lost
-- answer made us send it twice. No row back: the occurrence belongs to someone else.
WITH claimed AS (
    INSERT INTO job_executions (
        execution_id, schedule_id, job_id, domain, domain_config_id, status, started_at,
        scheduled_for, attempt, instance_id, fencing_token, trigger)
    VALUES (
        %(execution_id)s, %(schedule_id)s, %(job_id)s, %(domain)s, %(domain_config_id)s,
        'running', now(), %(scheduled_for)s, %(attempt)s, %(instance_id)s,
        nextval('job_fencing_seq'), %(trigger)s)
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
SELECT execution_id, fencing_token, started_at FROM job_executions
WHERE execution_id = %(execution_id)s AND status = 'running' AND NOT EXISTS (SELECT 1 FROM claimed);

-- name: record_skipped
-- Record an occurrence that was due but not run; never displaces any existing row.
INSERT INTO job_executions (
    execution_id, schedule_id, job_id, domain, domain_config_id, status, started_at,
    completed_at, duration_seconds, scheduled_for, attempt, instance_id, trigger,
    error_message, error_details)
VALUES (
    %(execution_id)s, %(schedule_id)s, %(job_id)s, %(domain)s, %(domain_config_id)s, 'skipped',
    now(), now(), 0, %(scheduled_for)s, %(attempt)s, %(instance_id)s, %(trigger)s,
    %(error_message)s, %(error_details)s)
ON CONFLICT (schedule_id, scheduled_for, attempt) DO NOTHING
RETURNING execution_id;

-- name: finish_execution
-- Final write of a run, fenced: only our own still-running row, and the schedule's last_* only
-- when no newer fencing number has been recorded for it.
WITH finished AS (
    UPDATE job_executions
    SET status = %(status)s, completed_at = now(), duration_seconds = %(duration_seconds)s,
        scan_id = %(scan_id)s, error_message = %(error_message)s,
        error_details = %(error_details)s, metadata = %(metadata)s
    WHERE execution_id = %(execution_id)s AND status = 'running'
      AND fencing_token = %(fencing_token)s
    RETURNING schedule_id, started_at
), schedule AS (
    UPDATE schedules s
    SET last_run = finished.started_at, last_status = %(status)s, last_error = %(error_message)s,
        next_run = %(next_run)s, last_fencing_token = %(fencing_token)s
    FROM finished
    WHERE s.schedule_id = finished.schedule_id
      AND (s.last_fencing_token IS NULL OR s.last_fencing_token < %(fencing_token)s)
    RETURNING s.schedule_id
)
SELECT (SELECT count(*) FROM finished) AS execution_written,
       (SELECT count(*) FROM schedule) AS schedule_written;

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

-- name: set_next_runs
-- Write next_run for many schedules at once, touching only rows whose value differs.
UPDATE schedules s
SET next_run = v.next_run
FROM unnest(%(schedule_ids)s::uuid[], %(next_runs)s::timestamptz[]) AS v(schedule_id, next_run)
WHERE s.schedule_id = v.schedule_id AND s.next_run IS DISTINCT FROM v.next_run;

-- name: mark_schedule_status
-- Set last_status/last_error (e.g. 'invalid', 'expired') unless already exactly that.
UPDATE schedules
SET last_status = %(status)s, last_error = %(error)s, next_run = NULL
WHERE schedule_id = %(schedule_id)s
  AND (last_status IS DISTINCT FROM %(status)s OR last_error IS DISTINCT FROM %(error)s
       OR next_run IS NOT NULL);

-- name: get_profile_settings
-- A scan profile's settings, merged under a job's payload.
SELECT settings FROM scan_profiles WHERE profile_id = %(profile_id)s;

-- name: clear_schedule_mark
-- A fixed row loses its 'invalid'/'expired' mark.
UPDATE schedules SET last_status = NULL, last_error = NULL
WHERE schedule_id = %(schedule_id)s AND last_status IN ('invalid', 'expired');

-- name: occurrence_exists
-- Whether (schedule, occurrence, attempt) has a row, whatever its status.
SELECT EXISTS (
    SELECT 1 FROM job_executions
    WHERE schedule_id = %(schedule_id)s AND scheduled_for = %(scheduled_for)s
      AND attempt = %(attempt)s
) AS found;
