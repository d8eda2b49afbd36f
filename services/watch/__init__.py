"""Keeping the jobs equal to the rows: the loader (rows into the catalog and the job table) and the
watcher (NOTIFY, incremental and full passes).

Imports model, store and scheduling; never `engine` (due occurrences leave through
`model.occurrence.OccurrenceSink`).
"""
