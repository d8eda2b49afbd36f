-- 008: overlap policies and backfill. An occurrence waiting for an earlier run of its schedule
-- (time_config.overlap_policy buffer_one / buffer_all / cancel_other / terminate_other) or
-- queued by a backfill is a job_executions row with status 'queued': claimed under the unique
-- occurrence key and fenced like any run, visible in history, and started by whichever instance
-- is free when its turn comes (so it outlives the instance that queued it). Backfill rows carry
-- trigger 'backfill'.

ALTER TABLE job_executions DROP CONSTRAINT job_executions_status_check;
ALTER TABLE job_executions ADD CONSTRAINT job_executions_status_check CHECK (status IN (
    'running', 'completed', 'failed', 'timed_out', 'abandoned', 'cancelled', 'skipped',
    'queued'));

ALTER TABLE job_executions DROP CONSTRAINT job_executions_trigger_check;
ALTER TABLE job_executions ADD CONSTRAINT job_executions_trigger_check CHECK (trigger IN (
    'schedule', 'manual', 'retry', 'catchup', 'backfill'));

-- The queue: every instance reads the heads several times a second; almost always empty.
CREATE INDEX job_executions_queued_idx ON job_executions (schedule_id, scheduled_for, attempt)
    WHERE status = 'queued';

-- A cancel sent by a newer occurrence (cancel_other / terminate_other) says why, so the
-- stopped run's row reads "replaced by the occurrence of <time>" on whichever instance ran it.
ALTER TABLE run_requests ADD COLUMN reason TEXT;
