-- 002: requests from the CLI to live daemons: "run this schedule now", "stop this run".
-- Any live instance claims a trigger; only the instance running an execution acts on its cancel.

CREATE TABLE run_requests (
    request_id   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         VARCHAR(20) NOT NULL,
    schedule_id  UUID REFERENCES schedules (schedule_id) ON DELETE CASCADE,
    execution_id UUID,  -- cancel: the run to stop; trigger: the run it started
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_by   VARCHAR(255),
    claimed_at   TIMESTAMPTZ,
    done_at      TIMESTAMPTZ,
    result       TEXT,
    CONSTRAINT run_requests_kind_check CHECK (kind IN ('trigger', 'cancel')),
    CONSTRAINT run_requests_target_check CHECK (
        (kind = 'trigger' AND schedule_id IS NOT NULL)
        OR (kind = 'cancel' AND execution_id IS NOT NULL))
);

CREATE INDEX run_requests_open_idx ON run_requests (requested_at) WHERE done_at IS NULL;

CREATE FUNCTION run_requests_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scheduler_requests', NEW.request_id::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER run_requests_notify
    AFTER INSERT ON run_requests
    FOR EACH ROW EXECUTE FUNCTION run_requests_notify();
