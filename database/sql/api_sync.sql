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
