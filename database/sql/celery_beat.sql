-- name: beat_tables
-- Which of django-celery-beat's tables this database has (the clocked one came with 2.0).
SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_name LIKE %(prefix)s;

-- name: periodic_tasks
-- django-celery-beat's PeriodicTask rows with the columns of their schedule, read-only.
-- {clocked_join} and {clocked_time} are filled by the reader with one of two fixed fragments:
-- the clocked table's join, or nothing and NULL where that table does not exist.
SELECT t.name, t.task, t.args, t.kwargs, t.queue, t.enabled, t.one_off, t.start_time,
       t.expires, t.description,
       c.minute AS cron_minute, c.hour AS cron_hour, c.day_of_month AS cron_day_of_month,
       c.month_of_year AS cron_month_of_year, c.day_of_week AS cron_day_of_week,
       c.timezone AS cron_timezone,
       i.every AS interval_every, i.period AS interval_period,
       s.event AS solar_event, {clocked_time} AS clocked_time
FROM django_celery_beat_periodictask t
LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id
LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id
LEFT JOIN django_celery_beat_solarschedule s ON s.id = t.solar_id
{clocked_join}
ORDER BY t.name;
