-- 004: the management API's data: tokens, the audit trail of configuration changes, and new
-- columns of schedules (tags and notify are configuration; created_by and paused_* are not).
--
-- Configuration is now domain_config_id, domain, name, profile_id, frequency, time_config,
-- enabled, job_type, payload, source, tags, notify: those are hashed, notified and audited. The
-- daemon's bookkeeping (next_run, last_run, last_status, last_error, last_fencing_token) and the
-- new non-configuration columns never are, and no index covers them (bookkeeping writes stay
-- HOT updates).

-- API tokens: only the SHA-256 (hex) of a token is stored, never the token itself.
CREATE TABLE api_tokens (
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT api_tokens_name_key PRIMARY KEY (name),
    CONSTRAINT api_tokens_token_sha256_key UNIQUE (token_sha256),
    CONSTRAINT api_tokens_role_check CHECK (role IN ('read', 'write', 'admin')),
    CONSTRAINT api_tokens_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT api_tokens_sha256_is_hex CHECK (token_sha256 ~ '^[0-9a-f]{64}$')
);

-- A tag is 1-64 characters of [A-Za-z0-9_.:-]; a one-dimensional array without NULLs.
CREATE FUNCTION schedule_tags_are_valid(tags TEXT[]) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(array_ndims(tags), 1) = 1
       AND NOT EXISTS (
           SELECT 1 FROM unnest(tags) AS t (tag)
           WHERE t.tag IS NULL OR t.tag !~ '^[A-Za-z0-9_.:-]{1,64}$')
$$;

-- Existing rows get the defaults ('{}' is a valid tag list and a valid notify object).
ALTER TABLE schedules
    ADD COLUMN tags        TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN notify      JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN created_by  TEXT,
    ADD COLUMN paused_note TEXT,
    ADD COLUMN paused_by   TEXT,
    ADD COLUMN paused_at   TIMESTAMPTZ,
    ADD CONSTRAINT schedules_tags_valid CHECK (schedule_tags_are_valid(tags)),
    ADD CONSTRAINT schedules_notify_is_object CHECK (jsonb_typeof(notify) = 'object');

COMMENT ON CONSTRAINT schedules_tags_valid ON schedules IS
    'each tag is 1-64 characters of [A-Za-z0-9_.:-]';

-- `WHERE tags @> ARRAY['nightly']` (every tag listed must be present) uses this index.
CREATE INDEX schedules_tags_idx ON schedules USING gin (tags);

-- The hash covers tags and notify, and is unchanged for a row that has neither: the hashes of
-- existing rows stay valid, so the migration changes nothing a running daemon has applied.
CREATE OR REPLACE FUNCTION schedules_config_hash(s schedules) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT md5((
        jsonb_build_array(
            s.domain_config_id, s.domain, s.name, s.profile_id, s.frequency, s.time_config,
            s.enabled, s.job_type, s.payload, s.source)
        || CASE WHEN s.tags = '{}' AND s.notify = '{}'::jsonb THEN '[]'::jsonb
                ELSE jsonb_build_array(s.tags, s.notify) END
    )::text)
$$;

-- A row's configuration columns as one JSON object: the audit trail's before/after.
CREATE FUNCTION schedules_config_json(s schedules) RETURNS JSONB
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'domain_config_id', s.domain_config_id, 'domain', s.domain, 'name', s.name,
        'profile_id', s.profile_id, 'frequency', s.frequency, 'time_config', s.time_config,
        'enabled', s.enabled, 'job_type', s.job_type, 'payload', s.payload, 'source', s.source,
        'tags', s.tags, 'notify', s.notify)
$$;

-- Who is changing schedules: `scheduler.actor` of this transaction or session when set
-- (api:<token name>, cli:<OS user>, sync), else sql:<session_user>.
CREATE FUNCTION scheduler_actor() RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('scheduler.actor', true), ''), 'sql:' || session_user)
$$;

-- The audit trail. No foreign key: a schedule's trail outlives it.
CREATE TABLE schedule_audit (
    audit_id       BIGSERIAL PRIMARY KEY,
    schedule_id    UUID NOT NULL,
    action         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    changed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    changed_fields TEXT[] NOT NULL DEFAULT '{}',
    before         JSONB,
    after          JSONB,
    CONSTRAINT schedule_audit_action_check CHECK (action IN ('insert', 'update', 'delete'))
);

CREATE INDEX schedule_audit_schedule_idx ON schedule_audit (schedule_id, audit_id);
CREATE INDEX schedule_audit_changed_at_idx ON schedule_audit (changed_at);

-- The configuration columns whose values differ between two schedules_config_json objects
-- (compared as JSON text, as the hash compares them), in name order.
CREATE FUNCTION schedules_changed_fields(before JSONB, after JSONB) RETURNS TEXT[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(k.field ORDER BY k.field), '{}')
    FROM (SELECT jsonb_object_keys(coalesce(before, '{}') || coalesce(after, '{}'))) AS k (field)
    WHERE (before -> k.field)::text IS DISTINCT FROM (after -> k.field)::text
$$;

-- AFTER: on a configuration change (the hash differs, or an insert or delete), tell listeners
-- which schedule changed, remember deletions, and write the audit row.
CREATE OR REPLACE FUNCTION schedules_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_config JSONB;
    new_config JSONB;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO schedule_tombstones (schedule_id) VALUES (OLD.schedule_id);
        PERFORM pg_notify('schedules_changed', OLD.schedule_id::text);
        old_config := schedules_config_json(OLD);
    ELSIF TG_OP = 'INSERT' OR NEW.config_hash IS DISTINCT FROM OLD.config_hash THEN
        PERFORM pg_notify('schedules_changed', NEW.schedule_id::text);
        new_config := schedules_config_json(NEW);
        IF TG_OP = 'UPDATE' THEN
            old_config := schedules_config_json(OLD);
        END IF;
    ELSE
        RETURN NEW;  -- no configuration change: nothing to tell, nothing to audit
    END IF;
    INSERT INTO schedule_audit (schedule_id, action, actor, changed_fields, before, after)
    VALUES (coalesce(NEW.schedule_id, OLD.schedule_id), lower(TG_OP), scheduler_actor(),
            schedules_changed_fields(old_config, new_config), old_config, new_config);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

-- The triggers fire for statements that set a configuration column (tags and notify now
-- included); the functions still compare hashes, so a no-op SET changes nothing.
DROP TRIGGER schedules_before_write ON schedules;
CREATE TRIGGER schedules_before_write
    BEFORE INSERT OR UPDATE OF domain_config_id, domain, name, profile_id, frequency,
        time_config, enabled, job_type, payload, source, tags, notify, last_fencing_token
    ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_before_write();

DROP TRIGGER schedules_notify_change ON schedules;
CREATE TRIGGER schedules_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF domain_config_id, domain, name, profile_id, frequency,
        time_config, enabled, job_type, payload, source, tags, notify
    ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_notify_change();
