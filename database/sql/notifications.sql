-- name: insert_events
-- Store events in the outbox (a JSON array, one object per (event, channel)); an event key
-- stored before (by this or another instance) is kept as it is, and a channel that does not
-- exist takes nothing. Returns the new rows.
INSERT INTO notifications (event_key, channel, event, schedule_id, execution_id, body)
SELECT e.event_key, e.channel, e.event, e.schedule_id, e.execution_id, e.body
FROM jsonb_to_recordset(%(events)s::jsonb) AS e(
    event_key text, channel text, event text, schedule_id uuid, execution_id uuid, body jsonb)
JOIN notification_channels c ON c.name = e.channel
ORDER BY e.event_key
ON CONFLICT (event_key) DO NOTHING
RETURNING notification_id, channel, event;

-- name: take_due
-- Lease pending rows whose time has come (none leased by a live delivery elsewhere): they are
-- this instance's for %(lease)s seconds. Oldest first.
UPDATE notifications n
SET lease_until = clock_timestamp() + make_interval(secs => %(lease)s::double precision),
    attempts = n.attempts + 1
FROM (
    SELECT notification_id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
      AND (lease_until IS NULL OR lease_until < clock_timestamp())
    ORDER BY next_attempt_at, notification_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) due
WHERE n.notification_id = due.notification_id
RETURNING n.notification_id, n.event_key, n.channel, n.event, n.schedule_id, n.execution_id,
          n.body, n.attempts, n.created_at;

-- name: sent_last_minute
-- Messages each channel was sent in the last minute (single ones and digests).
SELECT channel, count(*) AS sent
FROM notifications
WHERE status = 'sent' AND sent_at > clock_timestamp() - interval '60 seconds'
  AND channel = ANY(%(channels)s::text[])
GROUP BY channel;

-- name: oldest_sent_last_minute
-- When a channel's rate budget frees up again: its oldest message of the last minute.
SELECT min(sent_at) AS oldest
FROM notifications
WHERE status = 'sent' AND channel = %(channel)s
  AND sent_at > clock_timestamp() - interval '60 seconds';

-- name: mark_sent
-- Delivered (only while our lease holds: a row another instance took over is theirs).
UPDATE notifications
SET status = 'sent', sent_at = clock_timestamp(), lease_until = NULL, last_error = NULL
WHERE notification_id = ANY(%(ids)s::bigint[]) AND status = 'pending';

-- name: mark_retry
-- Not delivered: try again at %(delay)s seconds from now.
UPDATE notifications
SET next_attempt_at = clock_timestamp() + make_interval(secs => %(delay)s::double precision),
    lease_until = NULL, last_error = %(error)s
WHERE notification_id = ANY(%(ids)s::bigint[]) AND status = 'pending';

-- name: mark_given_up
-- Not delivered and out of attempts (or nowhere to go): kept with the reason.
UPDATE notifications
SET status = %(status)s, lease_until = NULL, last_error = %(error)s
WHERE notification_id = ANY(%(ids)s::bigint[]) AND status = 'pending';

-- name: defer_unattempted
-- Leased but not tried (the channel was down or over its rate): back to pending at
-- %(delay)s seconds, the attempt it was charged given back.
UPDATE notifications
SET next_attempt_at = clock_timestamp() + make_interval(secs => %(delay)s::double precision),
    lease_until = NULL, attempts = greatest(attempts - 1, 0)
WHERE notification_id = ANY(%(ids)s::bigint[]) AND status = 'pending';

-- name: insert_digest
-- A digest sent in place of the given rows: recorded as sent, the rows marked digested.
WITH digest AS (
    INSERT INTO notifications (event_key, channel, event, body, status, attempts, sent_at)
    VALUES (%(event_key)s, %(channel)s, 'digest', %(body)s, 'sent', 1, clock_timestamp())
    RETURNING notification_id
)
UPDATE notifications n
SET status = 'digested', digest_id = digest.notification_id, sent_at = clock_timestamp(),
    lease_until = NULL
FROM digest
WHERE n.notification_id = ANY(%(ids)s::bigint[]) AND n.status = 'pending'
RETURNING digest.notification_id;

-- name: insert_sent
-- A message sent outside the outbox's loop (a channel test), recorded as it ended.
INSERT INTO notifications (event_key, channel, event, body, status, attempts, sent_at,
                           last_error)
VALUES (%(event_key)s, %(channel)s, %(event)s, %(body)s, %(status)s, 1,
        CASE WHEN %(status)s = 'sent' THEN clock_timestamp() END, %(error)s)
RETURNING notification_id;

-- name: outbox_depth
-- Rows waiting to be delivered.
SELECT count(*) AS pending FROM notifications WHERE status = 'pending';

-- name: recent_notifications
-- The latest notifications, newest first, with optional filters.
SELECT notification_id, event_key, channel, event, schedule_id, execution_id, status,
       attempts, next_attempt_at, last_error, digest_id, created_at, sent_at,
       body ->> 'message' AS message
FROM notifications
WHERE (%(channel)s::text IS NULL OR channel = %(channel)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(schedule_id)s::uuid IS NULL OR schedule_id = %(schedule_id)s)
  AND (%(before)s::bigint IS NULL OR notification_id < %(before)s)
ORDER BY notification_id DESC
LIMIT %(limit)s;

-- name: prune_notifications
-- Delivered or given-up rows older than the retention.
DELETE FROM notifications
WHERE status <> 'pending'
  AND created_at < now() - make_interval(secs => %(days)s::double precision * 86400);
