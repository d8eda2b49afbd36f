"""APScheduler 3 behind one adapter: the job table, our executor, the heap job store and the
trigger that fires by `model.fire_times`.

The only package that imports `apscheduler`.
"""
