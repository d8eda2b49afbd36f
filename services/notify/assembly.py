"""Builds the notification parts from the settings: the senders, the producer and the delivery."""

from __future__ import annotations

from dataclasses import dataclass

from services.config import Settings
from services.metrics import Metrics
from services.model.notify_rule import read_rule
from services.notify.delivery import NotificationDelivery
from services.notify.producer import NotificationProducer
from services.notify.senders import Senders, SmtpSettings
from services.store.channels import ChannelStore
from services.store.notifications import NotificationStore
from services.store.pool import DatabaseConnection


def build_senders(s: Settings) -> Senders:
    dashboard = s.notify_dashboard_url or f"http://{s.http_host}:{s.http_port}"
    return Senders(
        allowed_hosts=s.notify_allowed_hosts,
        webhook_secret=s.notify_webhook_secret,
        smtp=SmtpSettings(
            host=s.smtp_host,
            port=s.smtp_port,
            user=s.smtp_user,
            password=s.smtp_password,
            starttls=s.smtp_starttls,
            sender=s.smtp_from,
        ),
        timeout=s.request_timeout,
        dashboard_url=dashboard,
    )


@dataclass(frozen=True)
class Notifications:
    producer: NotificationProducer
    delivery: NotificationDelivery
    senders: Senders
    store: NotificationStore

    def close(self) -> None:
        self.senders.close()


def build_notifications(s: Settings, db: DatabaseConnection, metrics: Metrics) -> Notifications:
    store = NotificationStore(db)
    senders = build_senders(s)
    producer = NotificationProducer(
        store,
        default_rule=read_rule(dict(s.notify_default), "NOTIFY_DEFAULT"),
        default_timezone=s.scheduler_timezone,
    )
    delivery = NotificationDelivery(
        store,
        ChannelStore(db),
        senders,
        metrics,
        rate_per_minute=s.notify_rate_per_minute,
        max_attempts=s.notify_max_attempts,
    )
    return Notifications(producer, delivery, senders, store)
