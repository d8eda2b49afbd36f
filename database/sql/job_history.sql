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

-- name: page_executions
-- A page of runs, newest first, keyset-paged on (started_at, execution_id): only rows below
-- (%(before_at)s, %(before_id)s), the last row of the previous page or `until` (NULL: from the
-- newest), and at or after %(since)s; the other filters are optional. Both bounds are index
-- conditions on job_executions_started_idx (with a schedule_id, on
-- job_executions_schedule_started_idx); no index holds execution_id, so an incremental sort
-- orders each run of rows that share one started_at (a batch claimed by one statement).
SELECT * FROM job_executions
WHERE (started_at, execution_id)
      < (coalesce(%(before_at)s::timestamptz, 'infinity'),
         coalesce(%(before_id)s::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
  AND started_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (%(schedule_id)s::uuid IS NULL OR schedule_id = %(schedule_id)s::uuid)
  AND (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
  AND (%(trigger)s::text IS NULL OR trigger = %(trigger)s::text)
  AND (%(instance_id)s::text IS NULL OR instance_id = %(instance_id)s::text)
ORDER BY started_at DESC, execution_id DESC
LIMIT %(limit)s;

-- name: execution_stats
-- Over the rows started within the last %(days)s days (one schedule's, or all): the row count
-- of every status seen, and the runs' counts, durations and duration percentiles; which
-- statuses are runs, successes and failures comes from services.model.vocabulary. The window
-- is read twice rather than materialized: a materialized CTE of a wide window spills to disk.
WITH in_window AS NOT MATERIALIZED (
    SELECT status, duration_seconds FROM job_executions
    WHERE started_at >= now() - make_interval(secs => %(days)s::double precision * 86400)
      AND (%(schedule_id)s::uuid IS NULL OR schedule_id = %(schedule_id)s::uuid)
), runs AS (
    SELECT status, duration_seconds FROM in_window
    WHERE status = ANY (%(run_statuses)s::text[])
)
SELECT (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)
        FROM (SELECT status, count(*) AS n FROM in_window GROUP BY status) AS seen) AS by_status,
       count(*) AS total_executions,
       count(*) FILTER (WHERE status = ANY (%(successful_statuses)s::text[])) AS successful,
       count(*) FILTER (WHERE status = ANY (%(failed_statuses)s::text[])) AS failed,
       avg(duration_seconds) AS avg_duration,
       min(duration_seconds) AS min_duration,
       max(duration_seconds) AS max_duration,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50_duration,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95_duration
FROM runs;

-- name: status_counts
-- Rows started within the last %(hours)s hours, all schedules, counted by status (the
-- dashboard overview's chart): execution_stats without its durations and percentiles.
SELECT status, count(*) AS n
FROM job_executions
WHERE started_at >= now() - make_interval(hours => %(hours)s)
GROUP BY status;

-- name: daily_outcomes
-- One schedule's runs per UTC day and status over the last `days` days (the dashboard's
-- calendar of outcomes); index job_executions_schedule_started_idx.
SELECT (started_at AT TIME ZONE 'UTC')::date AS day, status, count(*) AS runs
FROM job_executions
WHERE schedule_id = %(schedule_id)s AND started_at >= now() - make_interval(days => %(days)s)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: finished_between
-- Runs that ended in (since, until] (job_executions_completed_idx), of schedules with a notify
-- rule (or all, when NOTIFY_DEFAULT gives one), with what their events need: whether the run
-- is a final failure (no retry follows), for a success whether the outcome before it was a
-- final failure, and for a final failure how many final failures in a row end with it
-- (counted up to %(max_streak)s). Outcomes are ordered by started_at.
WITH done AS (
    SELECT j.execution_id, j.schedule_id, j.status, j.scheduled_for, j.attempt, j.trigger,
           j.error_message, j.duration_seconds, j.started_at, j.completed_at, j.instance_id,
           (j.status IN ('failed', 'timed_out', 'abandoned')
            AND NOT coalesce(j.error_details @> '{"retry_planned": true}', false))
               AS final_failure
    FROM job_executions j
    WHERE j.completed_at > %(since)s AND j.completed_at <= %(until)s
      AND j.schedule_id IS NOT NULL
      AND j.status IN ('completed', 'failed', 'timed_out', 'abandoned', 'skipped')
)
SELECT d.*, s.domain, s.name, s.frequency, s.notify,
       coalesce(prev.failed, false) AS previous_failed,
       coalesce(streak.n, 0) AS streak
FROM done d
JOIN schedules s ON s.schedule_id = d.schedule_id
LEFT JOIN LATERAL (
    SELECT p.status <> 'completed' AS failed
    FROM job_executions p
    WHERE p.schedule_id = d.schedule_id AND p.started_at < d.started_at
      AND (p.status = 'completed'
           OR (p.status IN ('failed', 'timed_out', 'abandoned')
               AND NOT coalesce(p.error_details @> '{"retry_planned": true}', false)))
    ORDER BY p.started_at DESC
    LIMIT 1
) prev ON d.status = 'completed'
LEFT JOIN LATERAL (
    SELECT count(*) AS n
    FROM (
        SELECT 1
        FROM job_executions f
        WHERE f.schedule_id = d.schedule_id AND f.started_at <= d.started_at
          AND f.status IN ('failed', 'timed_out', 'abandoned')
          AND NOT coalesce(f.error_details @> '{"retry_planned": true}', false)
          AND f.started_at > coalesce(
              (SELECT max(ok.started_at) FROM job_executions ok
               WHERE ok.schedule_id = d.schedule_id AND ok.status = 'completed'
                 AND ok.started_at < d.started_at),
              '-infinity')
        LIMIT %(max_streak)s
    ) counted
) streak ON d.final_failure
WHERE s.notify <> '{}'::jsonb OR %(has_default)s
ORDER BY d.completed_at, d.execution_id;

-- name: completed_since
-- When each of the given schedules' runs completed since %(since)s (the missed check).
SELECT schedule_id, completed_at
FROM job_executions
WHERE schedule_id = ANY(%(schedule_ids)s::uuid[]) AND status = 'completed'
  AND completed_at >= %(since)s
ORDER BY schedule_id, completed_at;
