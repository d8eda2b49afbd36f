-- 001: schedules, job_executions, scan_profiles, and the triggers that keep them honest.
-- schema_migrations itself is created by run_migrations.py before any file is applied.

CREATE TABLE scan_profiles (
    profile_id  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name        VARCHAR(255) NOT NULL UNIQUE,
    settings    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE schedules (
    schedule_id        UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    domain_config_id   UUID NOT NULL,
    domain             VARCHAR(255) NOT NULL,
    name               VARCHAR(255),
    profile_id         UUID REFERENCES scan_profiles (profile_id) ON DELETE SET NULL,
    frequency          VARCHAR(50) NOT NULL,
    time_config        JSONB NOT NULL DEFAULT '{}'::jsonb,
    enabled            BOOLEAN NOT NULL DEFAULT true,
    job_type           VARCHAR(50),
    payload            JSONB NOT NULL DEFAULT '{}'::jsonb,
    source             VARCHAR(20) NOT NULL DEFAULT 'manual',
    -- Written by the daemon only; never part of the configuration.
    next_run           TIMESTAMPTZ,
    last_run           TIMESTAMPTZ,
    last_status        VARCHAR(50),
    last_error         TEXT,
    last_fencing_token BIGINT,
    -- Kept by triggers: what the configuration hashes to, and which transaction last changed it.
    config_hash        TEXT NOT NULL DEFAULT '',
    config_xid         XID8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT schedules_source_check CHECK (source IN ('manual', 'api')),
    CONSTRAINT schedules_domain_not_blank CHECK (btrim(domain) <> ''),
    CONSTRAINT schedules_payload_is_object CHECK (jsonb_typeof(payload) = 'object')
);

-- The API sync upserts by external id among its own rows.
CREATE UNIQUE INDEX schedules_api_domain_config_id_key
    ON schedules (domain_config_id) WHERE source = 'api';
CREATE INDEX schedules_domain_config_id_idx ON schedules (domain_config_id);
CREATE INDEX schedules_domain_idx ON schedules (domain);
-- The watcher reads "changed since the oldest transaction still open at my last pass".
CREATE INDEX schedules_config_xid_idx ON schedules (config_xid);
CREATE INDEX schedules_next_run_idx ON schedules (next_run) WHERE enabled;

-- Deleted schedules leave a tombstone so that an interval pass can see deletions it was not
-- notified of; old tombstones are pruned by the daemon.
CREATE TABLE schedule_tombstones (
    schedule_id UUID NOT NULL,
    deleted_xid XID8 NOT NULL DEFAULT pg_current_xact_id(),
    deleted_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX schedule_tombstones_deleted_xid_idx ON schedule_tombstones (deleted_xid);

-- Fencing numbers: taken when an occurrence is claimed; survive a Redis restart.
CREATE SEQUENCE job_fencing_seq AS BIGINT;

CREATE TABLE job_executions (
    execution_id     UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    schedule_id      UUID REFERENCES schedules (schedule_id) ON DELETE SET NULL,
    job_id           VARCHAR(255) NOT NULL,
    domain           VARCHAR(255) NOT NULL,
    domain_config_id UUID NOT NULL,
    status           VARCHAR(50) NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    duration_seconds DOUBLE PRECISION,
    scan_id          UUID,
    error_message    TEXT,
    error_details    JSONB,
    metadata         JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    scheduled_for    TIMESTAMPTZ NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    instance_id      VARCHAR(255),
    fencing_token    BIGINT,
    trigger          VARCHAR(20) NOT NULL DEFAULT 'schedule',
    CONSTRAINT job_executions_occurrence_key UNIQUE (schedule_id, scheduled_for, attempt),
    CONSTRAINT job_executions_status_check CHECK (status IN (
        'running', 'completed', 'failed', 'timed_out', 'abandoned', 'cancelled', 'skipped')),
    CONSTRAINT job_executions_trigger_check CHECK (trigger IN (
        'schedule', 'manual', 'retry', 'catchup')),
    CONSTRAINT job_executions_attempt_check CHECK (attempt >= 1)
);

CREATE INDEX job_executions_schedule_started_idx ON job_executions (schedule_id, started_at DESC);
CREATE INDEX job_executions_started_idx ON job_executions (started_at DESC);
CREATE INDEX job_executions_status_started_idx ON job_executions (status, started_at DESC);
-- The reaper scans running rows only.
CREATE INDEX job_executions_running_idx ON job_executions (instance_id) WHERE status = 'running';

-- Configuration columns: everything the operator sets. The daemon's own columns (next_run,
-- last_run, last_status, last_error, last_fencing_token) and the bookkeeping ones are excluded.
CREATE FUNCTION schedules_config_hash(s schedules) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT md5(jsonb_build_array(
        s.domain_config_id, s.domain, s.name, s.profile_id, s.frequency, s.time_config,
        s.enabled, s.job_type, s.payload, s.source)::text)
$$;

-- BEFORE INSERT/UPDATE: recompute the hash; a real configuration change stamps updated_at and
-- config_xid. Also refuses a final write that carries an older fencing number than one already
-- recorded, so a stale lock holder can never overwrite a newer run's outcome.
CREATE FUNCTION schedules_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.config_hash := schedules_config_hash(NEW);
    IF TG_OP = 'INSERT' THEN
        NEW.config_xid := pg_current_xact_id();
        RETURN NEW;
    END IF;
    IF NEW.config_hash IS DISTINCT FROM OLD.config_hash THEN
        NEW.updated_at := now();
        NEW.config_xid := pg_current_xact_id();
    ELSE
        NEW.updated_at := OLD.updated_at;
        NEW.config_xid := OLD.config_xid;
    END IF;
    IF OLD.last_fencing_token IS NOT NULL
       AND (NEW.last_fencing_token IS NULL OR NEW.last_fencing_token < OLD.last_fencing_token) THEN
        RAISE EXCEPTION 'stale fencing token % for schedule % (newest is %)',
            NEW.last_fencing_token, NEW.schedule_id, OLD.last_fencing_token
            USING ERRCODE = 'P0001', CONSTRAINT = 'schedules_fencing_monotonic';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER schedules_before_write
    BEFORE INSERT OR UPDATE ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_before_write();

-- AFTER: tell listeners which schedule's configuration changed; remember deletions.
CREATE FUNCTION schedules_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO schedule_tombstones (schedule_id) VALUES (OLD.schedule_id);
        PERFORM pg_notify('schedules_changed', OLD.schedule_id::text);
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.config_hash IS DISTINCT FROM OLD.config_hash THEN
        PERFORM pg_notify('schedules_changed', NEW.schedule_id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER schedules_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_notify_change();

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER scan_profiles_touch_updated_at
    BEFORE UPDATE ON scan_profiles
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
