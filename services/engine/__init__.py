"""Running occurrences: the runner (lock, claim, handler, fenced result), the pipeline, firing
policy, retries, parking while PostgreSQL is down, rechecks, liveness, run requests, the global
pause switch, and `handlers/`.

Imports model, store, lock, scheduling and ops; never `watch` (the two meet through `model`
types and the job table).
"""
