"""The message each kind of channel gets for an event (or a digest of many).

Webhook: the event body as JSON, plus the dashboard link. Slack: an incoming-webhook body
(`text` for notifications and clients without blocks, `blocks` for the rest). Email: a subject
and a plain-text body.
"""

from __future__ import annotations

from typing import Any

DIGEST_SHOWN = 20  # events listed in a digest; the rest are counted


def dashboard_link(base_url: str | None, body: dict[str, Any]) -> str | None:
    schedule = body.get("schedule") or {}
    if not base_url or not schedule.get("schedule_id"):
        return base_url.rstrip("/") + "/" if base_url else None
    return f"{base_url.rstrip('/')}/schedules/{schedule['schedule_id']}"


def webhook_body(body: dict[str, Any], link: str | None) -> dict[str, Any]:
    return {
        "event": body.get("event"),
        "schedule": body.get("schedule"),
        "execution": body.get("execution"),
        "message": body.get("message"),
        "dashboard_url": link,
        **{k: v for k, v in body.items() if k in ("occurrence", "count", "events")},
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(body: dict[str, Any], link: str | None) -> dict[str, Any]:
    message = str(body.get("message") or "")
    event = str(body.get("event") or "")
    lines = [f"*{_slack_escape(event)}* {_slack_escape(message)}"]
    for item in (body.get("events") or [])[:DIGEST_SHOWN]:
        lines.append(
            f"• *{_slack_escape(str(item.get('event')))}* {_slack_escape(str(item.get('message')))}"
        )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}
    ]
    context = _context_line(body)
    if link:
        context.append(f"<{link}|open in the dashboard>")
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
        )
    return {"text": f"[{event}] {message}"[:3000], "blocks": blocks}


def _context_line(body: dict[str, Any]) -> list[str]:
    execution = body.get("execution") or {}
    parts = []
    if execution.get("scheduled_for"):
        parts.append(f"occurrence {execution['scheduled_for']}")
    if execution.get("attempt"):
        parts.append(f"attempt {execution['attempt']}")
    if execution.get("execution_id"):
        parts.append(f"execution {execution['execution_id']}")
    return [_slack_escape(p) for p in parts]


def email_message(body: dict[str, Any], link: str | None) -> tuple[str, str]:
    """(subject, plain-text body)."""
    schedule = body.get("schedule") or {}
    label = schedule.get("name") or schedule.get("domain") or schedule.get("schedule_id") or ""
    event = str(body.get("event") or "")
    subject = f"[scheduler] {event}: {label}" if label else f"[scheduler] {event}"
    lines = [str(body.get("message") or ""), ""]
    for item in (body.get("events") or [])[:DIGEST_SHOWN]:
        lines.append(f"- {item.get('event')}: {item.get('message')}")
    execution = body.get("execution") or {}
    for key in ("execution_id", "status", "scheduled_for", "attempt", "error_message"):
        if execution.get(key) not in (None, ""):
            lines.append(f"{key}: {execution[key]}")
    if schedule.get("schedule_id"):
        lines.append(f"schedule_id: {schedule['schedule_id']}")
    if link:
        lines += ["", link]
    return subject.replace("\n", " ")[:200], "\n".join(lines).strip() + "\n"


def digest_body(channel: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    count = len(items)
    shown = [
        {"event": i.get("event"), "message": i.get("message"), "schedule_id": i.get("schedule_id")}
        for i in items[:DIGEST_SHOWN]
    ]
    more = f" (first {DIGEST_SHOWN} listed)" if count > DIGEST_SHOWN else ""
    return {
        "event": "digest",
        "schedule": None,
        "execution": None,
        "message": f"{count} notifications for channel {channel} over its rate limit{more}",
        "count": count,
        "events": shown,
    }
