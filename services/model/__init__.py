"""Pure schedule maths and records: time_config parsing and validation, wall-clock rules, fire
times, the occurrence and its records, a run's output, the vocabulary (statuses, triggers).

Imports nothing of ours but `services.errors` and itself: no I/O, no clock, no APScheduler.
"""
