-- django-celery-beat's tables as Django's migrations leave them on PostgreSQL (written from
-- its models: column names and types only, which is all the import reads).
CREATE TABLE django_celery_beat_crontabschedule (
    id serial PRIMARY KEY,
    minute varchar(240) NOT NULL DEFAULT '*',
    hour varchar(96) NOT NULL DEFAULT '*',
    day_of_week varchar(64) NOT NULL DEFAULT '*',
    day_of_month varchar(124) NOT NULL DEFAULT '*',
    month_of_year varchar(64) NOT NULL DEFAULT '*',
    timezone varchar(63) NOT NULL DEFAULT 'UTC'
);
CREATE TABLE django_celery_beat_intervalschedule (
    id serial PRIMARY KEY,
    every integer NOT NULL,
    period varchar(24) NOT NULL
);
CREATE TABLE django_celery_beat_clockedschedule (
    id serial PRIMARY KEY,
    clocked_time timestamptz NOT NULL
);
CREATE TABLE django_celery_beat_solarschedule (
    id serial PRIMARY KEY,
    event varchar(24) NOT NULL,
    latitude numeric(9, 6) NOT NULL,
    longitude numeric(9, 6) NOT NULL
);
CREATE TABLE django_celery_beat_periodictask (
    id serial PRIMARY KEY,
    name varchar(200) NOT NULL UNIQUE,
    task varchar(200) NOT NULL,
    args text NOT NULL DEFAULT '[]',
    kwargs text NOT NULL DEFAULT '{}',
    queue varchar(200) NULL,
    exchange varchar(200) NULL,
    routing_key varchar(200) NULL,
    headers text NOT NULL DEFAULT '{}',
    priority integer NULL CHECK (priority >= 0),
    expires timestamptz NULL,
    expire_seconds integer NULL CHECK (expire_seconds >= 0),
    one_off boolean NOT NULL DEFAULT false,
    start_time timestamptz NULL,
    enabled boolean NOT NULL DEFAULT true,
    last_run_at timestamptz NULL,
    total_run_count integer NOT NULL DEFAULT 0 CHECK (total_run_count >= 0),
    date_changed timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL DEFAULT '',
    crontab_id integer NULL REFERENCES django_celery_beat_crontabschedule (id),
    interval_id integer NULL REFERENCES django_celery_beat_intervalschedule (id),
    solar_id integer NULL REFERENCES django_celery_beat_solarschedule (id),
    clocked_id integer NULL REFERENCES django_celery_beat_clockedschedule (id)
);
