"""A Celery app with a few tasks, run by a real worker process in the celery job tests."""
