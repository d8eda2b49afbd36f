"""Contract import path (seed 001): the lock and the process-wide Redis client live in `lock/`."""

from services.errors import LockNotAcquired
from services.lock.client import close_redis_client, create_redis_client, get_redis_client
from services.lock.keys import LOCK_KEY_PREFIX, api_sync_lock_key, schedule_lock_key
from services.lock.lock import DistributedLock, acquire_many, holders_many, release_many

__all__ = [
    "LOCK_KEY_PREFIX",
    "DistributedLock",
    "LockNotAcquired",
    "acquire_many",
    "api_sync_lock_key",
    "close_redis_client",
    "create_redis_client",
    "get_redis_client",
    "holders_many",
    "release_many",
    "schedule_lock_key",
]
