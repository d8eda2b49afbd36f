-- name: lock_migrations
-- Session advisory lock: one migrating process at a time (key = 'enhanced-scheduler:migrate').
SELECT pg_advisory_lock(hashtextextended('enhanced-scheduler:migrate', 0));

-- name: unlock_migrations
-- Release the migration lock taken by lock_migrations.
SELECT pg_advisory_unlock(hashtextextended('enhanced-scheduler:migrate', 0));

-- name: create_migrations_table
-- The ledger of applied files.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: migrations_table_exists
-- One row when schema_migrations exists in the current search path.
SELECT 1 FROM pg_catalog.pg_class WHERE oid = to_regclass('schema_migrations');

-- name: list_applied
-- Applied migrations in order.
SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version;

-- name: record_applied
-- Record one applied file.
INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s);
