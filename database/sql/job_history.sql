-- name: recent_executions
-- Runs started within the last %(hours)s hours, newest first (uses job_executions_started_idx).
SELECT * FROM job_executions
WHERE started_at >= now() - make_interval(secs => %(hours)s::double precision * 3600)
ORDER BY started_at DESC, execution_id DESC
LIMIT %(limit)s;

-- name: executions_by_schedule
-- One schedule's runs, newest first (uses job_executions_schedule_started_idx).
SELECT * FROM job_executions
WHERE schedule_id = %(schedule_id)s
ORDER BY started_at DESC, execution_id DESC
LIMIT %(limit)s;

-- name: find_executions
-- Runs matching optional filters (schedule, status, last N hours), newest first.
SELECT * FROM job_executions
WHERE (%(schedule_id)s::uuid IS NULL OR schedule_id = %(schedule_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(hours)s::double precision IS NULL
       OR started_at >= now() - make_interval(secs => %(hours)s::double precision * 3600))
ORDER BY started_at DESC, execution_id DESC
LIMIT %(limit)s;

-- name: get_execution
-- One run by id.
SELECT * FROM job_executions WHERE execution_id = %(execution_id)s;

-- name: running_executions
-- Runs still marked running, oldest first.
SELECT * FROM job_executions
WHERE status = 'running'
ORDER BY started_at, execution_id;

-- name: status_totals
-- Per status: run count and duration aggregates over runs started in the last %(days)s days.
SELECT status,
       count(*) AS runs,
       count(duration_seconds) AS timed_runs,
       sum(duration_seconds) AS total_duration,
       min(duration_seconds) AS min_duration,
       max(duration_seconds) AS max_duration
FROM job_executions
WHERE started_at >= now() - make_interval(secs => %(days)s::double precision * 86400)
  AND (%(schedule_id)s::uuid IS NULL OR schedule_id = %(schedule_id)s)
GROUP BY status;

-- name: cleanup_cutoff
-- The instant before which finished runs are pruned, fixed once per cleanup.
SELECT now() - make_interval(secs => %(days)s::double precision * 86400) AS cutoff;

-- name: delete_old_batch
-- Delete at most %(batch_size)s finished runs that started and ended before %(cutoff)s.
DELETE FROM job_executions
WHERE execution_id IN (
    SELECT execution_id FROM job_executions
    WHERE started_at < %(cutoff)s
      AND status <> 'running'
      AND (completed_at IS NULL OR completed_at < %(cutoff)s)
    LIMIT %(batch_size)s
    -- Rows another cleaner (or a late final write) holds are left for the next pass.
    FOR UPDATE SKIP LOCKED
);
