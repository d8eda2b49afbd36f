-- 005: indexes for the REST API's keyset paging of schedules (GET /api/v1/schedules).
--
-- A page is `WHERE (key, schedule_id) > (cursor) ORDER BY key, schedule_id LIMIT n`; with an
-- index on exactly (key, schedule_id) the first page and the thousandth cost the same. The sort
-- keys are created_at and domain. next_run has no index on purpose (migration 003: next_run
-- writes must stay HOT updates), so `sort=next_run` is a top-N sort of the filtered rows.
--
-- (domain, schedule_id) serves every query the old (domain) index did.

CREATE INDEX schedules_created_at_id_idx ON schedules (created_at, schedule_id);
CREATE INDEX schedules_domain_id_idx ON schedules (domain, schedule_id);
DROP INDEX schedules_domain_idx;
