"""A schedule's `notify` column (or NOTIFY_DEFAULT): which events go to which channels.

    {"channels": ["ops"], "on": ["failed", "recovered", "consecutive_failures:3", "skipped",
                                 "missed", "invalid"]}

`on` defaults to failed and recovered. `consecutive_failures:N` (N >= 2) fires once per streak,
at its N-th final failure. An empty object means "no rule of its own" (NOTIFY_DEFAULT applies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.errors import InvalidScheduleError

PLAIN_EVENTS = ("failed", "recovered", "skipped", "missed", "invalid")
STREAK_PREFIX = "consecutive_failures:"
DEFAULT_ON = ("failed", "recovered")
MAX_STREAK = 1000
MAX_CHANNELS = 20
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # as notification_channels' CHECK


@dataclass(frozen=True, slots=True)
class NotifyRule:
    channels: tuple[str, ...]
    events: frozenset[str]  # plain events
    streaks: tuple[int, ...]  # the N of each consecutive_failures:N

    def wants(self, event: str) -> bool:
        return event in self.events

    @property
    def empty(self) -> bool:
        return not self.channels


NO_RULE = NotifyRule((), frozenset(), ())


def notify_problems(value: object, where: str = "notify") -> list[str]:
    """Everything wrong with a notify object (nothing: an empty list)."""
    try:
        read_rule(value, where)
    except InvalidScheduleError as exc:
        return list(exc.problems) if exc.problems else [str(exc)]
    return []


def read_rule(value: object, where: str = "notify") -> NotifyRule:
    """The rule of a notify object; InvalidScheduleError names every problem."""
    if not isinstance(value, dict):
        raise InvalidScheduleError(f"{where} must be a JSON object, got {type(value).__name__}")
    if not value:
        return NO_RULE
    problems = [
        f"{where} has unknown key {key!r} (accepted: channels, on)"
        for key in value
        if key not in ("channels", "on")
    ]
    channels = _channels(value.get("channels"), where, problems)
    events, streaks = _events(value.get("on", list(DEFAULT_ON)), where, problems)
    if problems:
        raise InvalidScheduleError("; ".join(problems), problems=problems)
    return NotifyRule(channels, frozenset(events), tuple(sorted(set(streaks))))


def _channels(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        problems.append(f"{where}.channels must be a non-empty list of channel names")
        return ()
    if len(value) > MAX_CHANNELS:
        problems.append(f"{where}.channels may name at most {MAX_CHANNELS} channels")
    names: list[str] = []
    for name in value:
        if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
            problems.append(
                f"{where}.channels: {name!r} is not a channel name (1-64 of A-Z a-z 0-9 _ . : -)"
            )
        else:
            names.append(name)
    return tuple(dict.fromkeys(names))


def _events(value: Any, where: str, problems: list[str]) -> tuple[list[str], list[int]]:
    accepted = ", ".join((*PLAIN_EVENTS, f"{STREAK_PREFIX}N"))
    if not isinstance(value, list):
        problems.append(f"{where}.on must be a list of events ({accepted})")
        return [], []
    events: list[str] = []
    streaks: list[int] = []
    for event in value:
        if isinstance(event, str) and event in PLAIN_EVENTS:
            events.append(event)
        elif isinstance(event, str) and event.startswith(STREAK_PREFIX):
            count = event[len(STREAK_PREFIX) :]
            if count.isdigit() and 2 <= int(count) <= MAX_STREAK:
                streaks.append(int(count))
            else:
                problems.append(
                    f"{where}.on: {event!r} needs a count from 2 to {MAX_STREAK} "
                    f"(e.g. {STREAK_PREFIX}3)"
                )
        else:
            problems.append(f"{where}.on: unknown event {event!r} (accepted: {accepted})")
    return events, streaks
