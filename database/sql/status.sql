-- name: next_due
-- The enabled schedules due soonest.
SELECT schedule_id, domain, frequency, next_run FROM schedules
WHERE enabled AND next_run IS NOT NULL
ORDER BY next_run
LIMIT %(limit)s;
