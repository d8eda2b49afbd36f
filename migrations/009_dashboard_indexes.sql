-- 009: indexes for the dashboard at 100,000 schedules and 1,000,000 runs (bench_dashboard.py).
--
-- The overview's statistics of the last 24 hours (execution_stats: counts by status, duration
-- percentiles) read status and duration_seconds of every run in the window. With the index on
-- started_at alone they were fetched from the heap, one page per run when the runs of a day are
-- scattered over the table (rows written into space that pruning freed), and the by-status
-- count scanned all of job_executions_status_started_idx; 1 day took ~110-300 ms, 7 days ~340.
-- The same index with both columns INCLUDEd answers the window by an index-only scan (~13 ms
-- for a day). It replaces the old one, so a run's writes still touch as many indexes as before;
-- its final write changes status and duration_seconds, which an index (status) already covered,
-- so it was not a HOT update before either. The index grows from 26 to 46 MB per million runs.
--
-- The schedules list's search (`q`, case-insensitive substring of domain or name) had to read
-- every row in created_at order when few rows match: ~1 s for a term that matches nothing. A
-- trigram index on the lowered columns finds the matching rows directly (< 1 ms). domain and
-- name are configuration columns: the daemon's bookkeeping writes (next_run, last_*) never
-- change them and stay HOT updates. pg_trgm is a trusted extension (PostgreSQL 13+): a database
-- owner may create it.

DROP INDEX job_executions_started_idx;
CREATE INDEX job_executions_started_idx
    ON job_executions (started_at DESC) INCLUDE (status, duration_seconds);

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX schedules_search_trgm_idx ON schedules
    USING gin (lower(domain) gin_trgm_ops, lower(coalesce(name, '')) gin_trgm_ops);
