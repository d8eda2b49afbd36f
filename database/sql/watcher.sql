-- name: changed_since
-- Configuration changes committed since the watermark, and the next watermark: the oldest
-- transaction still open at this statement's snapshot (anything committing later has an xid at
-- least that), so a long transaction that commits after this pass is still seen by the next.
WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin)
SELECT snap.xmin, s.schedule_id, s.config_hash, s.enabled
FROM snap LEFT JOIN schedules s ON s.config_xid >= %(since)s::xid8;

-- name: deleted_since
-- Schedules deleted since the watermark.
SELECT DISTINCT schedule_id FROM schedule_tombstones WHERE deleted_xid >= %(since)s::xid8;

-- name: current_xmin
-- The watermark to start from: the oldest transaction open right now.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin;

-- name: all_schedules
-- The start-up load: every schedule, the columns of the Schedule record, with time_config and
-- payload as text (decoded once per distinct value by the loader).
SELECT schedule_id, domain_config_id, domain, frequency, time_config::text AS time_config_json,
       enabled, name, profile_id, job_type, payload::text AS payload_json, source, next_run,
       last_run, last_status, last_error, config_hash, created_at, updated_at
FROM schedules;

-- name: all_hashes
-- The safety pass: every schedule's id, configuration hash and enabled flag.
SELECT schedule_id, config_hash, enabled FROM schedules;

-- name: schedules_by_ids
-- Full rows of the schedules that changed.
SELECT * FROM schedules WHERE schedule_id = ANY(%(ids)s::uuid[]);

-- name: prune_tombstones
-- Forget deletions every instance has long since applied.
DELETE FROM schedule_tombstones WHERE deleted_at < now() - interval '1 day';
