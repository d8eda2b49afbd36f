-- 006: the global pause (a maintenance window). One row that every instance reads: while
-- `paused`, no instance starts a run, and each occurrence due meanwhile is recorded `skipped`
-- "scheduler paused: <note>". It lives in PostgreSQL so that an instance started during the
-- pause stays paused. (005 is another branch's; this file depends on nothing it adds.)

CREATE TABLE scheduler_state (
    id          BOOLEAN PRIMARY KEY DEFAULT true,
    paused      BOOLEAN NOT NULL DEFAULT false,
    paused_note TEXT,
    paused_by   TEXT,
    paused_at   TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A second row would be a second opinion on whether the scheduler is paused.
    CONSTRAINT scheduler_state_single_row CHECK (id),
    -- Every skipped row says why: a pause always carries its note.
    CONSTRAINT scheduler_state_paused_has_note CHECK (
        NOT paused OR btrim(coalesce(paused_note, '')) <> '')
);

INSERT INTO scheduler_state (id) VALUES (true);

-- BEFORE: keep the row coherent whoever writes it, the store or a hand-made UPDATE in psql:
-- a pause says when it began, a resume forgets the pause.
CREATE FUNCTION scheduler_state_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    IF NEW.paused THEN
        NEW.paused_at := coalesce(NEW.paused_at, now());
    ELSE
        NEW.paused_note := NULL;
        NEW.paused_by := NULL;
        NEW.paused_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER scheduler_state_before_write
    BEFORE INSERT OR UPDATE ON scheduler_state
    FOR EACH ROW EXECUTE FUNCTION scheduler_state_before_write();

-- AFTER: tell the instances at once (each also reads the row twice a second, which is what
-- guarantees the bound: a notification can be missed while a listener reconnects).
CREATE FUNCTION scheduler_state_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scheduler_state', CASE WHEN NEW.paused THEN 'paused' ELSE 'resumed' END);
    RETURN NEW;
END
$$;

CREATE TRIGGER scheduler_state_notify
    AFTER INSERT OR UPDATE ON scheduler_state
    FOR EACH ROW EXECUTE FUNCTION scheduler_state_notify();
