-- name: insert_schedule
-- Create one schedule; the database fills the defaults.
INSERT INTO schedules (domain_config_id, domain, name, profile_id, frequency, time_config,
                       enabled, job_type, payload, source)
VALUES (%(domain_config_id)s, %(domain)s, %(name)s, %(profile_id)s, %(frequency)s,
        %(time_config)s, %(enabled)s, %(job_type)s, %(payload)s, %(source)s)
RETURNING schedule_id;

-- name: get_schedule
-- One schedule by id.
SELECT * FROM schedules WHERE schedule_id = %(schedule_id)s;

-- name: get_schedule_for_update
-- One schedule by id, locked until the end of the transaction (read-modify-write).
SELECT * FROM schedules WHERE schedule_id = %(schedule_id)s FOR UPDATE;

-- name: update_schedule_config
-- Write every configuration column of one schedule (the caller merged and validated them).
UPDATE schedules
SET domain_config_id = %(domain_config_id)s, domain = %(domain)s, name = %(name)s,
    profile_id = %(profile_id)s, frequency = %(frequency)s, time_config = %(time_config)s,
    enabled = %(enabled)s, job_type = %(job_type)s, payload = %(payload)s, source = %(source)s
WHERE schedule_id = %(schedule_id)s
RETURNING *;

-- name: set_enabled
-- Enable or disable one schedule.
UPDATE schedules SET enabled = %(enabled)s WHERE schedule_id = %(schedule_id)s RETURNING *;

-- name: delete_schedule
-- Delete one schedule (its job_executions keep their rows, schedule_id set to NULL).
DELETE FROM schedules WHERE schedule_id = %(schedule_id)s;

-- name: list_schedules
-- Schedules matching optional filters, oldest first.
SELECT * FROM schedules
WHERE (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND (%(domain)s::text IS NULL OR domain = %(domain)s)
  AND (%(domain_config_id)s::uuid IS NULL OR domain_config_id = %(domain_config_id)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
ORDER BY created_at, schedule_id
LIMIT %(limit)s;

-- name: list_invalid
-- Rows the daemon marked invalid, with the reason.
SELECT * FROM schedules WHERE last_status = 'invalid' ORDER BY created_at, schedule_id;
