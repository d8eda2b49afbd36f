-- 010: notifications (DESIGN.md "Notifications"): channels, the outbox, and the producer's mark.
--
-- notification_channels: where messages go. target is {"url"} (webhook, slack) or {"to": [...]}
-- (email); a Slack URL is itself a secret, so answers and logs show only its host.
--
-- notifications: the outbox. One row per (event, occurrence or streak, channel): event_key is
-- unique, so any number of instances may produce the same event and it is stored once. A row
-- is delivered by whichever instance leases it (FOR UPDATE SKIP LOCKED, lease_until), retried
-- with backoff until NOTIFY_MAX_ATTEMPTS. Beyond a channel's rate, pending rows are sent as one
-- digest: a row of its own (event 'digest'), which the rows it carried point to (digest_id).
--
-- notification_progress: how far the producer has read finished runs (completed_at), so each
-- pass reads only what finished since; the row is also the producers' mutex (SKIP LOCKED). It
-- starts at the migration's time: upgrading does not alert on the whole history.
--
-- job_executions gains an index on completed_at for that read: one more index entry per run's
-- final write (the final write was never a HOT update: it changes the indexed status).

CREATE TABLE notification_channels (
    name        TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    kind        TEXT NOT NULL CHECK (kind IN ('webhook', 'slack', 'email')),
    target      JSONB NOT NULL CHECK (jsonb_typeof(target) = 'object'),
    enabled     BOOLEAN NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    notification_id  BIGSERIAL PRIMARY KEY,
    event_key        TEXT NOT NULL UNIQUE,
    channel          TEXT NOT NULL REFERENCES notification_channels (name) ON DELETE CASCADE,
    event            TEXT NOT NULL,
    schedule_id      UUID,
    execution_id     UUID,
    body             JSONB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'digested', 'dropped')),
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until      TIMESTAMPTZ,
    last_error       TEXT,
    digest_id        BIGINT REFERENCES notifications (notification_id) ON DELETE SET NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_channel_sent_idx ON notifications (channel, sent_at)
    WHERE status = 'sent';
CREATE INDEX notifications_created_idx ON notifications (created_at DESC);

CREATE TABLE notification_progress (
    name           TEXT PRIMARY KEY,
    scanned_until  TIMESTAMPTZ NOT NULL
);
INSERT INTO notification_progress (name, scanned_until) VALUES ('executions', now());

CREATE INDEX job_executions_completed_idx ON job_executions (completed_at);
-- The missed check reads the (usually few) schedules that set expected_within.
CREATE INDEX schedules_expected_within_idx ON schedules (schedule_id)
    WHERE time_config ? 'expected_within';
