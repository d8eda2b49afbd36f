"""Channel management for the CLI and the API: add (checked), list and show (redacted),
remove, and test (one message sent now, recorded in the outbox's history)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from services.errors import InvalidChannel
from services.model.records import Channel
from services.notify.senders import Senders, SendFailed
from services.notify.targets import check_name, check_target, redacted
from services.store.channels import ChannelStore
from services.store.notifications import NotificationStore


def public(channel: Channel) -> dict[str, Any]:
    """A channel as people may see it: the target without secrets."""
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": redacted(channel.kind, channel.target),
        "enabled": channel.enabled,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }


class ChannelAdmin:
    def __init__(
        self,
        channels: ChannelStore,
        outbox: NotificationStore,
        senders: Senders,
        allowed_hosts: Sequence[str],
    ) -> None:
        self.channels = channels
        self.outbox = outbox
        self.senders = senders
        self.allowed_hosts = tuple(allowed_hosts)

    def add(self, name: str, kind: str, target: object, *, enabled: bool = True) -> dict[str, Any]:
        if not isinstance(enabled, bool):
            raise InvalidChannel(f"enabled must be true or false, got {enabled!r}")
        checked = check_target(kind, target, self.allowed_hosts)
        return public(self.channels.create(check_name(name), kind, checked, enabled))

    def list(self) -> list[dict[str, Any]]:
        return [public(c) for c in self.channels.list()]

    def get(self, name: str) -> dict[str, Any]:
        return public(self.channels.get(name))

    def remove(self, name: str) -> None:
        self.channels.remove(name)

    def test(self, name: str) -> dict[str, Any]:
        """Send a test message to the channel now; {"channel", "delivered", "error"}."""
        channel = self.channels.get(name)
        body = {
            "event": "test",
            "schedule": None,
            "execution": None,
            "message": f"test notification for channel {name}: it reaches you",
        }
        key = f"test:{name}:{uuid.uuid4()}"
        error: str | None = None
        try:
            self.senders.send(channel, body, key)
        except SendFailed as exc:
            error = str(exc)
        self.outbox.record_direct(name, key, "test", body, error=error)
        return {"channel": name, "delivered": error is None, "error": error}
