-- name: set_actor
-- Name who makes this transaction's schedule changes, for the audit trigger (migration 004);
-- transaction-local, so a pooled connection never carries it into another caller's writes.
SELECT set_config('scheduler.actor', %(actor)s, true);

-- name: list_audit
-- Audit rows matching optional filters, newest first, keyset-paged by audit_id.
SELECT audit_id, schedule_id, action, actor, changed_at, changed_fields, before, after
FROM schedule_audit
WHERE (%(schedule_id)s::uuid IS NULL OR schedule_id = %(schedule_id)s::uuid)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
  AND (%(since)s::timestamptz IS NULL OR changed_at >= %(since)s::timestamptz)
  AND (%(before_id)s::bigint IS NULL OR audit_id < %(before_id)s::bigint)
ORDER BY audit_id DESC
LIMIT %(limit)s;

-- name: audit_cutoff
-- The instant before which audit rows are pruned, fixed once per prune.
SELECT now() - make_interval(secs => %(days)s::double precision * 86400) AS cutoff;

-- name: delete_old_audit_batch
-- Delete at most %(batch_size)s audit rows older than %(cutoff)s.
DELETE FROM schedule_audit
WHERE audit_id IN (
    SELECT audit_id FROM schedule_audit
    WHERE changed_at < %(cutoff)s
    ORDER BY changed_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
);
