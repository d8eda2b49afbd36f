"""Schedules from an external HTTP API: the client, item parsing, the plan of changes, one sync
run, and the periodic service under `lock:api_sync`.

Imports model, store and lock; writes through the schedules store only.
"""
