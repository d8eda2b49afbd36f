"""Redis: the client factory, the key names, and the renewable lock with its batch operations
(acquire_many, holders_many, release_many).

Imports `services.errors`, `services.ops.timer` and redis-py; nothing of the engine.
"""
