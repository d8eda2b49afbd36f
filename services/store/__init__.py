"""The data door: one module per table (schedules, executions, history, run requests, scheduler
state, ...), the pending-writes queue, group commit, LISTEN, migrations.

The only package that imports `database`; it knows no other room.
"""
