-- name: take_progress
-- The producers' mark and the database's clock, locked until commit; no row when another
-- instance is producing now (it will read the same runs; the event keys keep them once).
SELECT scanned_until, clock_timestamp() AS now
FROM notification_progress WHERE name = 'executions'
FOR UPDATE SKIP LOCKED;

-- name: advance_progress
-- Move the mark (never backwards).
UPDATE notification_progress SET scanned_until = greatest(scanned_until, %(until)s)
WHERE name = 'executions';
