-- name: renew_member
-- Join, or renew this instance's membership lease (every heartbeat of the shard keeper).
INSERT INTO scheduler_members (instance_id, lease_until, shards, replicas)
VALUES (%(instance_id)s, now() + make_interval(secs => %(lease)s), %(shards)s, %(replicas)s)
ON CONFLICT (instance_id) DO UPDATE
SET lease_until = EXCLUDED.lease_until, shards = EXCLUDED.shards, replicas = EXCLUDED.replicas;

-- name: expire_members
-- Forget the instances whose lease ran out (dead, or cut off for longer than LOCK_TIMEOUT).
DELETE FROM scheduler_members WHERE lease_until <= now();

-- name: live_members
-- The live instances the shards are assigned over, with the shard settings each runs with.
SELECT instance_id, shards, replicas, started_at FROM scheduler_members
WHERE lease_until > now() ORDER BY instance_id;

-- name: leave_members
-- A graceful stop: the others re-assign this instance's shards at their next round.
DELETE FROM scheduler_members WHERE instance_id = %(instance_id)s;
