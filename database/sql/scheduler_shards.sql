-- name: expire_shard_leases
-- Leases of owners that stopped renewing them (dead, or cut off for longer than LOCK_TIMEOUT).
DELETE FROM scheduler_shards WHERE lease_until <= now();

-- name: renew_shard_leases
-- Renew every lease this instance holds; what it still holds (a lease expired and deleted by
-- another instance meanwhile is missing here).
UPDATE scheduler_shards SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE instance_id = %(instance_id)s
RETURNING shard, epoch, loaded_at IS NOT NULL AS loaded;

-- name: take_shard_leases
-- New leases, not yet loaded, each with a fresh epoch.
INSERT INTO scheduler_shards (shard, instance_id, lease_until, epoch)
SELECT k, %(instance_id)s, now() + make_interval(secs => %(lease)s), nextval('scheduler_shard_epochs')
FROM unnest(%(shards)s::int[]) AS t (k)
ON CONFLICT (shard, instance_id) DO UPDATE SET lease_until = EXCLUDED.lease_until
RETURNING shard, epoch, loaded_at IS NOT NULL AS loaded;

-- name: mark_shards_loaded
-- This owner has loaded these shards (only the leases of these epochs: not a later one's).
UPDATE scheduler_shards SET loaded_at = now()
FROM unnest(%(shards)s::int[], %(epochs)s::bigint[]) AS t (k, e)
WHERE instance_id = %(instance_id)s AND shard = t.k AND epoch = t.e;

-- name: forget_loaded_shards
-- A new process under this INSTANCE_ID has loaded nothing yet: the loaded marks its predecessor
-- left on leases still live go, so no other instance drops a shard, or skips its catch-up, on
-- the strength of rows this process does not hold.
UPDATE scheduler_shards SET loaded_at = NULL WHERE instance_id = %(instance_id)s;

-- name: live_shard_leases
-- Every live lease: who owns which shard, and whether it has loaded it.
SELECT shard, instance_id, epoch, loaded_at IS NOT NULL AS loaded FROM scheduler_shards
WHERE lease_until > now() ORDER BY shard, instance_id;

-- name: drop_shard_leases
-- Give up these shards (their new owners have loaded them).
DELETE FROM scheduler_shards WHERE instance_id = %(instance_id)s AND shard = ANY(%(shards)s::int[]);

-- name: leave_shards
-- A graceful stop: every lease of this instance.
DELETE FROM scheduler_shards WHERE instance_id = %(instance_id)s;
