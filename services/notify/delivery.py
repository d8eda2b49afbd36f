"""Delivery: the outbox to the channels, on every instance, never on a run's path.

Each pass leases due rows (FOR UPDATE SKIP LOCKED, so no two instances hold a row) and sends
them channel by channel. A channel may take NOTIFY_RATE_PER_MINUTE messages a minute: beyond
that, what is due goes as one digest when the budget next allows one message. A failure is
tried again with exponential backoff up to NOTIFY_MAX_ATTEMPTS; a channel found unreachable is
not tried again in the same pass, and its other rows keep their attempts for when it returns.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger
from services.metrics import Metrics
from services.model.records import Channel
from services.notify.messages import digest_body
from services.notify.senders import Senders, SendFailed
from services.store.channels import ChannelStore
from services.store.notifications import NotificationStore, OutboxRow

log = get_logger(__name__)

POLL_SECONDS = 1.0
LEASE_SECONDS = 60.0  # longer than any one send (its time-out) times a pass's rows per channel
TAKE_LIMIT = 200
MAX_BACKOFF = 300.0


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 2, 4, 8, ... at most 300."""
    return float(min(MAX_BACKOFF, 2.0 ** max(1, attempts)))


class NotificationDelivery:
    def __init__(
        self,
        store: NotificationStore,
        channels: ChannelStore,
        senders: Senders,
        metrics: Metrics,
        *,
        rate_per_minute: int,
        max_attempts: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.channels = channels
        self.senders = senders
        self.metrics = metrics
        self.rate = rate_per_minute
        self.max_attempts = max_attempts
        self._now = now

    def run_once(self) -> int:
        """One pass; how many rows it settled (sent, digested or given up)."""
        try:
            rows = self.store.take_due(limit=TAKE_LIMIT, lease=LEASE_SECONDS)
            self.metrics.notification_outbox_depth.set(self.store.depth())
            if not rows:
                return 0
            by_channel: dict[str, list[OutboxRow]] = defaultdict(list)
            for row in rows:
                by_channel[row.channel].append(row)
            known = self.channels.named(list(by_channel))
            sent = self.store.sent_last_minute(list(by_channel))
            return sum(
                self._deliver(name, known.get(name), items, sent.get(name, 0))
                for name, items in by_channel.items()
            )
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("notify.delivery_paused", error=str(exc))
            return 0

    def _deliver(self, name: str, channel: Channel | None, rows: list[OutboxRow], sent: int) -> int:
        ids = [row.notification_id for row in rows]
        if channel is None or not channel.enabled:
            why = "channel removed" if channel is None else "channel disabled"
            self.store.give_up(ids, status="dropped", error=why)
            for row in rows:
                self.metrics.notifications.labels(name, row.event, "dropped").inc()
            return len(rows)
        budget = self.rate - sent
        if budget <= 0:
            self.store.defer(ids, delay=self._budget_frees(name))
            return 0
        if len(rows) > budget:
            # budget - 1 go one by one, the rest as one digest (the budget's last message).
            singles, digested = rows[: budget - 1], rows[budget - 1 :]
        else:
            singles, digested = rows, []
        settled = 0
        for index, row in enumerate(singles):
            try:
                self.senders.send(channel, row.body, row.event_key)
            except SendFailed as exc:
                settled += self._failed(channel, [row], exc)
                if exc.channel_down:
                    rest = [r.notification_id for r in singles[index + 1 :] + digested]
                    self.store.defer(rest, delay=backoff(row.attempts))
                    return settled
                continue
            self.store.mark_sent([row.notification_id])
            self.metrics.notifications.labels(name, row.event, "sent").inc()
            settled += 1
        if digested:
            settled += self._digest(channel, digested)
        return settled

    def _digest(self, channel: Channel, rows: list[OutboxRow]) -> int:
        items = [
            {
                "event": row.event,
                "message": row.body.get("message"),
                "schedule_id": None if row.schedule_id is None else str(row.schedule_id),
            }
            for row in rows
        ]
        body = digest_body(channel.name, items)
        key = f"digest:{channel.name}:{uuid.uuid4()}"
        try:
            self.senders.send(channel, body, key)
        except SendFailed as exc:
            return self._failed(channel, rows, exc)
        self.store.record_digest(channel.name, key, body, [r.notification_id for r in rows])
        for row in rows:
            self.metrics.notifications.labels(channel.name, row.event, "digested").inc()
        log.info("notify.digest_sent", channel=channel.name, count=len(rows))
        return len(rows)

    def _failed(self, channel: Channel, rows: list[OutboxRow], exc: SendFailed) -> int:
        """Schedule the next try of each row, or give it up; how many were given up."""
        error = str(exc)
        given_up = [r for r in rows if exc.final or r.attempts >= self.max_attempts]
        again = [r for r in rows if r not in given_up]
        if given_up:
            self.store.give_up([r.notification_id for r in given_up], status="failed", error=error)
        for row in again:
            self.store.mark_retry([row.notification_id], delay=backoff(row.attempts), error=error)
        for row in rows:
            result = "failed" if row in given_up else "retry"
            self.metrics.notifications.labels(channel.name, row.event, result).inc()
        log.warning(
            "notify.send_failed",
            channel=channel.name,
            error=error,
            rows=len(rows),
            given_up=len(given_up),
        )
        return len(given_up)

    def _budget_frees(self, channel: str) -> float:
        oldest = self.store.oldest_sent_last_minute(channel)
        if oldest is None:
            return 1.0
        return max(1.0, (oldest + timedelta(seconds=60) - self._now()).total_seconds())
