-- 003: the daemon's own writes (next_run, last_*) no longer run the configuration triggers.
-- Writing next_run for 100,000 rows ran two plpgsql triggers per row for nothing. The triggers
-- now fire only when a statement sets a configuration column (or, for the fencing check,
-- last_fencing_token); the functions still compare hashes, so a no-op SET changes nothing.
-- The next_run index goes too: it made every run's bookkeeping write a non-HOT update.

DROP TRIGGER schedules_before_write ON schedules;
CREATE TRIGGER schedules_before_write
    BEFORE INSERT OR UPDATE OF domain_config_id, domain, name, profile_id, frequency,
        time_config, enabled, job_type, payload, source, last_fencing_token
    ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_before_write();

DROP TRIGGER schedules_notify_change ON schedules;
CREATE TRIGGER schedules_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF domain_config_id, domain, name, profile_id, frequency,
        time_config, enabled, job_type, payload, source
    ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_notify_change();

DROP INDEX schedules_next_run_idx;
