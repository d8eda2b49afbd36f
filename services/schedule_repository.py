"""Contract import path (seed 001): the schedules table's store lives in `store/schedules.py`."""

from services.store.schedules import ScheduleRepository, get_schedule_repository, validate_config

__all__ = ["ScheduleRepository", "get_schedule_repository", "validate_config"]
