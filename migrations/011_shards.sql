-- 011: shards (DESIGN.md "Beyond one machine"). With SCHEDULER_SHARDS = S > 1, a schedule
-- belongs to shard floor(key * S / 2^32), key being the first 32 bits of md5(schedule_id::text):
-- a hash, so ids that are not random (time-ordered UUIDv7, hand-made ids) still spread evenly;
-- and a range of one number, so any S reads a shard through one expression index, by range.
-- services/model/shards.py computes the same values in Python.
--
-- scheduler_members: the live instances the assignment runs over, each a lease renewed with the
-- heartbeat (lease_until); a dead instance's row outlives it by at most LOCK_TIMEOUT.
-- scheduler_shards: one row per (shard, owner) lease. epoch grows with every new lease on the
-- shard (its owners' generations); loaded_at is set once that owner has loaded the shard, which
-- is what lets a leaving owner drop it (make-before-break).

CREATE FUNCTION scheduler_shard_key(id uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ('x' || substr(md5(id::text), 1, 8))::bit(32)::bigint $$;

CREATE FUNCTION scheduler_shard(id uuid, shards integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ((scheduler_shard_key(id) * shards) >> 32)::integer $$;

CREATE INDEX schedules_shard_key ON schedules (scheduler_shard_key(schedule_id));

CREATE TABLE scheduler_members (
    instance_id TEXT PRIMARY KEY,
    lease_until TIMESTAMPTZ NOT NULL,
    shards      INTEGER NOT NULL CHECK (shards >= 1),
    replicas    INTEGER NOT NULL CHECK (replicas >= 1),
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every new lease draws its epoch here: unique and increasing, whoever takes it.
CREATE SEQUENCE scheduler_shard_epochs;

CREATE TABLE scheduler_shards (
    shard       INTEGER NOT NULL CHECK (shard >= 0),
    instance_id TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    epoch       BIGINT NOT NULL,
    loaded_at   TIMESTAMPTZ,
    PRIMARY KEY (shard, instance_id)
);
CREATE INDEX scheduler_shards_instance ON scheduler_shards (instance_id);
