-- name: get_scheduler_state
-- The global pause: the one row of scheduler_state (none if someone deleted it: not paused).
SELECT paused, paused_note, paused_by, paused_at FROM scheduler_state WHERE id;

-- name: pause_scheduler
-- Pause every instance, or, already paused, replace the note (and who wrote it); paused_at
-- stays the start of the pause. An upsert, so a deleted row comes back.
INSERT INTO scheduler_state (id, paused, paused_note, paused_by, paused_at)
VALUES (true, true, %(note)s, %(by)s, now())
ON CONFLICT (id) DO UPDATE
SET paused = true, paused_note = EXCLUDED.paused_note, paused_by = EXCLUDED.paused_by,
    paused_at = CASE WHEN scheduler_state.paused THEN scheduler_state.paused_at
                     ELSE EXCLUDED.paused_at END
RETURNING paused, paused_note, paused_by, paused_at;

-- name: resume_scheduler
-- End the pause; the row's trigger clears the note, author and time.
INSERT INTO scheduler_state (id, paused) VALUES (true, false)
ON CONFLICT (id) DO UPDATE SET paused = false
RETURNING paused, paused_note, paused_by, paused_at;
