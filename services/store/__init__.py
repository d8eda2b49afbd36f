"""The data door: one module per table (schedules, executions, history, run requests, scheduler
state, tokens, audit, ...), the pending-writes queue, group commit, keyset paging, LISTEN,
migrations.

The only package that imports `database`; it knows no other room.
"""
