"""Sending one message to one channel: HTTP POST (webhook, Slack) or SMTP (email).

A failure is a SendFailed whose message never holds the target's URL, the webhook secret or
the SMTP password; `channel_down` says the channel could not be reached at all (the delivery
then leaves that channel's other rows alone until later).

httpx is imported at the first HTTP send, not with this module: see services/http_client.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from services.errors import InvalidChannel
from services.http_client import LazyHttpClient
from services.model.records import Channel
from services.notify.messages import dashboard_link, email_message, slack_body, webhook_body
from services.notify.targets import check_url

SIGNATURE_HEADER = "X-Scheduler-Signature"


class SendFailed(Exception):
    def __init__(self, message: str, *, channel_down: bool = False, final: bool = False):
        super().__init__(message)
        self.channel_down = channel_down
        self.final = final  # no attempt can succeed (a target no longer allowed)


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None
    port: int = 587
    user: str | None = None
    password: str | None = None
    starttls: bool = True
    sender: str = "scheduler@localhost"


def signature(secret: str, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


class Senders:
    def __init__(
        self,
        *,
        allowed_hosts: Sequence[str],
        webhook_secret: str | None,
        smtp: SmtpSettings,
        timeout: float,
        dashboard_url: str | None,
    ) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.webhook_secret = webhook_secret
        self.smtp = smtp
        self.timeout = timeout
        self.dashboard_url = dashboard_url
        # Redirects are not followed: an allowed host must not forward us to one that is not.
        self._http = LazyHttpClient(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def send(self, channel: Channel, body: dict[str, Any], event_key: str) -> None:
        link = dashboard_link(self.dashboard_url, body)
        if channel.kind == "email":
            self._email(channel, body, link)
        elif channel.kind == "slack":
            self._post(channel, slack_body(body, link), event_key, signed=False)
        elif channel.kind == "webhook":
            self._post(channel, webhook_body(body, link), event_key, signed=True)
        else:
            raise SendFailed(f"unknown channel kind {channel.kind!r}", final=True)

    def _post(self, channel: Channel, payload: dict[str, Any], key: str, *, signed: bool) -> None:
        import httpx  # at the first HTTP send (see the module's text)

        try:
            url = check_url(channel.target.get("url"), self.allowed_hosts)
        except InvalidChannel as exc:  # NOTIFY_ALLOWED_HOSTS changed since the channel was added
            raise SendFailed(str(exc), final=True) from None
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "enhanced-scheduler",
            "X-Scheduler-Event": str(payload.get("event") or ""),
            # Receivers may drop a second delivery of the same key (after a crash mid-send).
            "X-Scheduler-Event-Key": key,
        }
        if signed and self.webhook_secret:
            headers[SIGNATURE_HEADER] = signature(self.webhook_secret, data)
        host = urlsplit(url).hostname
        try:
            response = self._http.get().post(url, content=data, headers=headers)
        except httpx.TimeoutException:
            raise SendFailed(
                f"{host} did not answer in {self.timeout:g} s", channel_down=True
            ) from None
        except httpx.HTTPError as exc:
            raise SendFailed(
                f"{host} unreachable ({type(exc).__name__})", channel_down=True
            ) from None
        if not 200 <= response.status_code < 300:
            down = response.status_code >= 500 or response.status_code == 429
            raise SendFailed(f"{host} answered HTTP {response.status_code}", channel_down=down)

    def _email(self, channel: Channel, body: dict[str, Any], link: str | None) -> None:
        smtp = self.smtp
        if not smtp.host:
            raise SendFailed("SMTP_HOST is not set", channel_down=True)
        subject, text = email_message(body, link)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = smtp.sender
        message["To"] = ", ".join(channel.target.get("to") or [])
        message.set_content(text)
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=self.timeout) as client:
                if smtp.starttls:
                    client.starttls(context=ssl.create_default_context())
                if smtp.user:
                    client.login(smtp.user, smtp.password or "")
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise SendFailed(
                f"SMTP {smtp.host}:{smtp.port} refused: {exc.smtp_code}",
                channel_down=exc.smtp_code >= 400,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SendFailed(
                f"SMTP {smtp.host}:{smtp.port} unreachable ({type(exc).__name__})",
                channel_down=True,
            ) from None
