-- name: insert_schedule
-- Create one schedule; the database fills the defaults.
INSERT INTO schedules (domain_config_id, domain, name, profile_id, frequency, time_config,
                       enabled, job_type, payload, source, tags, notify, created_by)
VALUES (%(domain_config_id)s, %(domain)s, %(name)s, %(profile_id)s, %(frequency)s,
        %(time_config)s, %(enabled)s, %(job_type)s, %(payload)s, %(source)s, %(tags)s,
        %(notify)s, %(created_by)s)
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
    enabled = %(enabled)s, job_type = %(job_type)s, payload = %(payload)s, source = %(source)s,
    tags = %(tags)s, notify = %(notify)s
WHERE schedule_id = %(schedule_id)s
RETURNING *;

-- name: set_enabled
-- Enable or disable one schedule; enabling also ends a pause (its note no longer applies).
UPDATE schedules
SET enabled = %(enabled)s,
    paused_note = CASE WHEN %(enabled)s THEN NULL ELSE paused_note END,
    paused_by = CASE WHEN %(enabled)s THEN NULL ELSE paused_by END,
    paused_at = CASE WHEN %(enabled)s THEN NULL ELSE paused_at END
WHERE schedule_id = %(schedule_id)s
RETURNING *;

-- name: pause_schedule
-- Pause one schedule: disabled (audited, as the enabled change it is), with why, who and when
-- (paused_* are not configuration: neither hashed nor audited themselves).
UPDATE schedules
SET enabled = false, paused_note = %(note)s, paused_by = %(by)s, paused_at = now()
WHERE schedule_id = %(schedule_id)s
RETURNING *;

-- name: resume_schedule
-- Resume one schedule: enabled again, its pause forgotten.
UPDATE schedules
SET enabled = true, paused_note = NULL, paused_by = NULL, paused_at = NULL
WHERE schedule_id = %(schedule_id)s
RETURNING *;

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
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
ORDER BY created_at, schedule_id
LIMIT %(limit)s;

-- name: next_due
-- The enabled schedules due soonest (`scheduler.py status`); a top-N sort, no index on next_run
-- (migration 003 dropped it so that next_run writes stay HOT updates).
SELECT * FROM schedules WHERE enabled AND next_run IS NOT NULL ORDER BY next_run LIMIT %(limit)s;

-- name: list_invalid
-- Rows the daemon marked invalid, with the reason.
SELECT * FROM schedules WHERE last_status = 'invalid' ORDER BY created_at, schedule_id;

-- The daemon's bookkeeping: next_run and the invalid/expired marks (never a config change).

-- name: set_next_runs
-- Write next_run for many schedules at once, touching only rows whose value differs and whose
-- configuration is still the one next_run was computed from (an edit since then writes its own).
UPDATE schedules s
SET next_run = v.next_run
FROM unnest(%(schedule_ids)s::uuid[], %(next_runs)s::timestamptz[], %(config_hashes)s::text[])
     AS v(schedule_id, next_run, config_hash)
WHERE s.schedule_id = v.schedule_id AND s.next_run IS DISTINCT FROM v.next_run
  AND s.config_hash IS NOT DISTINCT FROM v.config_hash;

-- name: mark_schedule_status
-- Set last_status/last_error (e.g. 'invalid', 'expired') unless already exactly that.
UPDATE schedules
SET last_status = %(status)s, last_error = %(error)s, next_run = NULL
WHERE schedule_id = %(schedule_id)s
  AND (last_status IS DISTINCT FROM %(status)s OR last_error IS DISTINCT FROM %(error)s
       OR next_run IS NOT NULL);

-- name: clear_schedule_mark
-- A fixed row loses its 'invalid'/'expired' mark.
UPDATE schedules SET last_status = NULL, last_error = NULL
WHERE schedule_id = %(schedule_id)s AND last_status IN ('invalid', 'expired');

-- The watcher: what changed since a watermark, the start-up load, the safety pass.

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
       last_run, last_status, last_error, config_hash, created_at, updated_at, tags,
       notify::text AS notify_json, created_by, paused_note, paused_by, paused_at
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

-- The API sync: the rows with source = 'api', read and written in one transaction.

-- name: lock_api_sync
-- Serialise appliers inside PostgreSQL too (the Redis lock decides who fetches; this keeps
-- read-plan-write correct even if two syncs ever overlap). Released at commit/rollback.
SELECT pg_advisory_xact_lock(hashtextextended('enhanced_scheduler:api_sync', 0));

-- name: diff_api_rows
-- The incoming items (a JSON array of {domain_config_id, domain, frequency, time_config,
-- enabled, job_type, payload}) that are new or differ from their api row: the row's id (NULL
-- when new) and, per managed column, whether it differs. jsonb equality: 1 = 1.0, true <> 1.
WITH incoming AS (
    SELECT (e ->> 'domain_config_id')::uuid AS domain_config_id, e ->> 'domain' AS domain,
           e ->> 'frequency' AS frequency, e -> 'time_config' AS time_config,
           (e ->> 'enabled')::boolean AS enabled, e ->> 'job_type' AS job_type,
           e -> 'payload' AS payload
    FROM jsonb_array_elements(%(rows)s::jsonb) AS e
)
SELECT i.domain_config_id, s.schedule_id,
       s.domain IS DISTINCT FROM i.domain AS domain,
       s.frequency IS DISTINCT FROM i.frequency AS frequency,
       s.time_config IS DISTINCT FROM i.time_config AS time_config,
       s.enabled IS DISTINCT FROM i.enabled AS enabled,
       s.job_type IS DISTINCT FROM i.job_type AS job_type,
       s.payload IS DISTINCT FROM i.payload AS payload
FROM incoming AS i
LEFT JOIN schedules AS s ON s.source = 'api' AND s.domain_config_id = i.domain_config_id
WHERE s.schedule_id IS NULL
   OR (s.domain::text, s.frequency::text, s.time_config, s.enabled, s.job_type::text, s.payload)
      IS DISTINCT FROM (i.domain, i.frequency, i.time_config, i.enabled, i.job_type, i.payload);

-- name: missing_api_rows
-- Enabled api rows whose domain_config_id the answer does not list (hash anti-join).
SELECT s.schedule_id, s.domain_config_id, s.domain, s.payload ->> 'external_id' AS external_id
FROM schedules AS s
WHERE s.source = 'api' AND s.enabled
  AND NOT EXISTS (
      SELECT 1 FROM unnest(%(present)s::uuid[]) AS p (id) WHERE p.id = s.domain_config_id);

-- name: insert_api_rows
-- Create api rows from a JSON array of {domain_config_id, domain, frequency, time_config,
-- enabled, job_type, payload}; one statement for the whole batch.
INSERT INTO schedules (domain_config_id, domain, frequency, time_config, enabled, job_type,
                       payload, source)
SELECT (e ->> 'domain_config_id')::uuid, e ->> 'domain', e ->> 'frequency', e -> 'time_config',
       (e ->> 'enabled')::boolean, e ->> 'job_type', e -> 'payload', 'api'
FROM jsonb_array_elements(%(rows)s::jsonb) AS e;

-- name: update_api_rows
-- Rewrite the managed columns of api rows from a JSON array of {schedule_id, ...}; name and
-- profile_id are not the API's and stay as they are.
UPDATE schedules AS s
SET domain = e ->> 'domain',
    frequency = e ->> 'frequency',
    time_config = e -> 'time_config',
    enabled = (e ->> 'enabled')::boolean,
    job_type = e ->> 'job_type',
    payload = e -> 'payload'
FROM jsonb_array_elements(%(rows)s::jsonb) AS e
WHERE s.schedule_id = (e ->> 'schedule_id')::uuid AND s.source = 'api';

-- name: disable_api_rows
-- Disable (never delete) api rows that a complete answer no longer lists.
UPDATE schedules SET enabled = false
WHERE schedule_id = ANY(%(schedule_ids)s::uuid[]) AND source = 'api' AND enabled;

-- The REST API: keyset pages, creator limits, bulk operations.
-- A page continues after the cursor's (key, schedule_id); the first page passes a lower bound
-- below every row ('-infinity', '', the nil UUID), so each query has one shape and one plan.
-- `q` matches domain or name as a case-insensitive substring: the parameter is a LIKE pattern
-- (the term between two percent signs, its wildcards escaped: schedule_pages.contains), which
-- the trigram index schedules_search_trgm_idx serves when few rows match (migration 009).

-- name: page_schedules_by_created_at
-- A page of schedules ordered by (created_at, schedule_id) (index schedules_created_at_id_idx).
SELECT * FROM schedules
WHERE (created_at, schedule_id) > (%(after_time)s::timestamptz, %(after_id)s::uuid)
  AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND (%(frequency)s::text IS NULL OR frequency = %(frequency)s)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(last_status)s::text IS NULL OR last_status = %(last_status)s)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(q)s::text IS NULL OR lower(domain) LIKE lower(%(q)s)
       OR lower(coalesce(name, '')) LIKE lower(%(q)s))
ORDER BY created_at, schedule_id
LIMIT %(limit)s;

-- name: page_schedules_by_domain
-- A page of schedules ordered by (domain, schedule_id) (index schedules_domain_id_idx).
SELECT * FROM schedules
WHERE (domain, schedule_id) > (%(after_text)s::text, %(after_id)s::uuid)
  AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND (%(frequency)s::text IS NULL OR frequency = %(frequency)s)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(last_status)s::text IS NULL OR last_status = %(last_status)s)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(q)s::text IS NULL OR lower(domain) LIKE lower(%(q)s)
       OR lower(coalesce(name, '')) LIKE lower(%(q)s))
ORDER BY domain, schedule_id
LIMIT %(limit)s;

-- name: page_schedules_by_next_run
-- A page of schedules ordered by next_run (none last), then schedule_id: a top-N sort of the keys
-- alone (next_run has no index: it must stay a HOT update), then the page's rows by primary key.
-- Sorting whole rows copied every row of the table into the sort: 40 % slower at 100,000 rows.
SELECT s.* FROM (
    SELECT schedule_id, coalesce(next_run, 'infinity'::timestamptz) AS sort_key
    FROM schedules
    WHERE (coalesce(next_run, 'infinity'::timestamptz), schedule_id)
          > (%(after_time)s::timestamptz, %(after_id)s::uuid)
      AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
      AND (%(frequency)s::text IS NULL OR frequency = %(frequency)s)
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
      AND (%(source)s::text IS NULL OR source = %(source)s)
      AND (%(last_status)s::text IS NULL OR last_status = %(last_status)s)
      AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
      AND (%(q)s::text IS NULL OR lower(domain) LIKE lower(%(q)s)
           OR lower(coalesce(name, '')) LIKE lower(%(q)s))
    ORDER BY sort_key, schedule_id
    LIMIT %(limit)s
) AS page
JOIN schedules AS s USING (schedule_id)
ORDER BY page.sort_key, page.schedule_id;

-- name: lock_creator
-- Serialise creates by one creator until commit, so that a limit check and its inserts are one
-- step (two concurrent creates cannot both pass the check).
SELECT pg_advisory_xact_lock(hashtextextended('enhanced_scheduler:creator:' || %(creator)s, 0));

-- name: count_by_creator
-- How many schedules one creator has made (MAX_SCHEDULES_PER_CREATOR).
SELECT count(*) FROM schedules WHERE created_by = %(creator)s;

-- name: match_for_bulk
-- The schedules a bulk operation targets (by ids, or by tag), locked until commit.
SELECT schedule_id, enabled FROM schedules
WHERE (%(ids)s::uuid[] IS NULL OR schedule_id = ANY(%(ids)s::uuid[]))
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])
ORDER BY schedule_id
FOR UPDATE;

-- name: pause_many
-- Pause (disable, with a note) the enabled schedules among the ids; returns those changed.
UPDATE schedules
SET enabled = false, paused_note = %(note)s, paused_by = %(paused_by)s, paused_at = now()
WHERE schedule_id = ANY(%(ids)s::uuid[]) AND enabled
RETURNING schedule_id;

-- name: resume_many
-- Resume (enable, note cleared) the disabled schedules among the ids; returns those changed.
UPDATE schedules
SET enabled = true, paused_note = NULL, paused_by = NULL, paused_at = NULL
WHERE schedule_id = ANY(%(ids)s::uuid[]) AND NOT enabled
RETURNING schedule_id;

-- name: delete_many
-- Delete the schedules among the ids (their history stays); returns those deleted.
DELETE FROM schedules WHERE schedule_id = ANY(%(ids)s::uuid[]) RETURNING schedule_id;

-- name: failing_schedules
-- Schedules whose latest outcome is a failure or that the daemon marked invalid, most recent
-- first (the dashboard's overview). last_status has no index (bookkeeping stays HOT): a scan.
SELECT * FROM schedules
WHERE last_status IN ('failed', 'timed_out', 'abandoned', 'invalid')
ORDER BY last_run DESC NULLS LAST, schedule_id
LIMIT %(limit)s;

-- name: invalid_for_notify
-- Rows marked invalid whose notify rule (or NOTIFY_DEFAULT) may want to hear of it.
SELECT schedule_id, domain, name, frequency, notify, config_hash, last_error
FROM schedules
WHERE last_status = 'invalid' AND (notify <> '{}'::jsonb OR %(has_default)s);

-- name: expecting_completion
-- Enabled rows with time_config.expected_within: the missed check's candidates.
SELECT schedule_id, domain, name, frequency, time_config::text AS time_config_json, notify,
       created_at, next_run, last_status
FROM schedules
WHERE enabled AND time_config ? 'expected_within'
  AND (notify <> '{}'::jsonb OR %(has_default)s);

-- Shards (migration 011): one instance's part of the table, read by ranges of the shard key
-- through its index; `lo` and `hi` are the owned shards' key ranges (services/model/shards.py).

-- name: shard_schedules
-- The start-up load and a newly taken shard's load: the all_schedules columns, of these ranges.
SELECT schedule_id, domain_config_id, domain, frequency, time_config::text AS time_config_json,
       enabled, name, profile_id, job_type, payload::text AS payload_json, source, next_run,
       last_run, last_status, last_error, config_hash, created_at, updated_at, tags,
       notify::text AS notify_json, created_by, paused_note, paused_by, paused_at
FROM schedules s
JOIN unnest(%(lo)s::bigint[], %(hi)s::bigint[]) AS r (lo, hi)
  ON scheduler_shard_key(s.schedule_id) >= r.lo AND scheduler_shard_key(s.schedule_id) < r.hi;

-- name: shard_hashes
-- The safety pass over the owned shards: id, configuration hash and enabled flag.
SELECT schedule_id, config_hash, enabled FROM schedules s
JOIN unnest(%(lo)s::bigint[], %(hi)s::bigint[]) AS r (lo, hi)
  ON scheduler_shard_key(s.schedule_id) >= r.lo AND scheduler_shard_key(s.schedule_id) < r.hi;
