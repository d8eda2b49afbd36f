"""Contract import path (seed 001): run history lives in `store/history.py`."""

from services.store.history import (
    FAILED_STATUSES,
    RUN_STATUSES,
    SUCCESSFUL_STATUSES,
    JobHistory,
    get_job_history,
)

__all__ = [
    "FAILED_STATUSES",
    "RUN_STATUSES",
    "SUCCESSFUL_STATUSES",
    "JobHistory",
    "get_job_history",
]
