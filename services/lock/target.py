"""Where Redis is: one server (REDIS_URL), or a master found through Sentinel.

A value object, built once from the settings and handed to the client factory
(`services.lock.client.create_redis_client`), so that every client of the process reaches the
same Redis the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.config import mask_url
from services.model.redis_sentinels import split_host_port

if TYPE_CHECKING:
    from services.config import Settings


@dataclass(frozen=True, slots=True)
class RedisTarget:
    # One server: where it is. With sentinels: only the database, the credentials and TLS
    # (redis:// or rediss://); the host and port are the sentinels' answer.
    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None  # REDIS_SENTINEL_MASTER
    sentinel_password: str | None = None

    def __post_init__(self) -> None:
        if bool(self.sentinels) != bool(self.service):
            raise ValueError("sentinels and their service name go together")

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        return cls(
            url=settings.redis_url,
            sentinels=tuple(split_host_port(entry) for entry in settings.redis_sentinels),
            service=settings.redis_sentinel_master,
            sentinel_password=settings.redis_sentinel_password,
        )

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    def __str__(self) -> str:
        """For logs and messages: never a password."""
        if not self.uses_sentinel:
            return mask_url(self.url)
        nodes = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel service {self.service!r} via {nodes}"


def as_target(target: RedisTarget | str) -> RedisTarget:
    """A plain URL is a single server (scripts, benchmarks and tests pass one)."""
    return target if isinstance(target, RedisTarget) else RedisTarget(url=target)
