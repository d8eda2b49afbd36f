"""The producer: what finished, went invalid or missed its deadline becomes outbox rows.

One pass reads the runs that ended since the producers' mark, the rows marked invalid, and the
deadlines (occurrence + expected_within) that passed since the mark, turns them into events
per each schedule's rule (its `notify`, else NOTIFY_DEFAULT) and stores them with the mark's
advance in one transaction. Instances take turns (the mark is locked with SKIP LOCKED); the
event keys keep an event once even when two passes read the same run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from services.errors import DatabaseError, DatabaseUnavailable, InvalidScheduleError
from services.log import get_logger
from services.model.notify_rule import MAX_STREAK, NO_RULE, NotifyRule, read_rule
from services.model.spec import parse_schedule
from services.notify.events import finished_run_events, invalid_events, missed_events
from services.notify.missed import deadline_window_occurrences, without_completion
from services.store.notifications import NotificationStore, PendingEvent, ProducerTurn

log = get_logger(__name__)

# A run's row is written with completed_at = the statement's time and committed a moment
# later; reading back this far catches rows that committed after a pass had read past them.
OVERLAP = timedelta(seconds=30)
# Deadlines are judged this long after they pass, so a run that completed just in time has
# committed by then.
SETTLE = timedelta(seconds=0.5)


class NotificationProducer:
    def __init__(
        self, store: NotificationStore, *, default_rule: NotifyRule, default_timezone: str
    ) -> None:
        self.store = store
        self.default_rule = default_rule
        self.default_timezone = default_timezone
        self._has_default = not default_rule.empty
        self._bad_rules: set[str] = set()

    def run_once(self) -> int:
        """One pass; how many new outbox rows it stored (0 when another instance is on it)."""
        try:
            with self.store.producer_turn() as turn:
                if turn is None:
                    return 0
                return self._produce(turn)
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("notify.producer_paused", error=str(exc))
            return 0

    def _produce(self, turn: ProducerTurn) -> int:
        pending: list[PendingEvent] = []
        finished = turn.finished(
            since=turn.since - OVERLAP, has_default=self._has_default, max_streak=MAX_STREAK + 1
        )
        for row in finished:
            rule = self._rule(row)
            if not rule.empty:
                pending += finished_run_events(row, rule)
        for row in turn.invalid(has_default=self._has_default):
            rule = self._rule(row)
            if not rule.empty:
                pending += invalid_events(row, rule)
        pending += self._missed(turn, (turn.since - SETTLE, turn.now - SETTLE))
        stored = turn.store(pending)
        turn.advance(turn.now)
        for row in stored:
            log.info("notify.event_stored", channel=row["channel"], notify_event=row["event"])
        return len(stored)

    def _missed(self, turn: ProducerTurn, window: tuple[datetime, datetime]) -> list[PendingEvent]:
        candidates: list[tuple[Mapping[str, Any], NotifyRule, float, list[datetime]]] = []
        for expecting in turn.expecting(has_default=self._has_default):
            rule = self._rule(expecting)
            if rule.empty or not rule.wants("missed"):
                continue
            judged = self._occurrences(expecting, window)
            if judged is not None and judged[1]:
                candidates.append((expecting, rule, judged[0], judged[1]))
        if not candidates:
            return []
        earliest = min(occurrences[0] for _row, _rule, _within, occurrences in candidates)
        done = turn.completed_since([row["schedule_id"] for row, *_ in candidates], earliest)
        pending: list[PendingEvent] = []
        for row, rule, within, occurrences in candidates:
            missed = without_completion(occurrences, within, done.get(row["schedule_id"], []))
            pending += missed_events(row, rule, missed, within)
        return pending

    def _occurrences(
        self, row: Mapping[str, Any], window: tuple[datetime, datetime]
    ) -> tuple[float, list[datetime]] | None:
        """(expected_within, the occurrences whose deadline is in the window), or None."""
        try:
            config = json.loads(row["time_config_json"])
        except ValueError:
            return None
        within = config.get("expected_within") if isinstance(config, dict) else None
        if isinstance(within, bool) or not isinstance(within, int | float) or within <= 0:
            return None
        try:
            spec = parse_schedule(
                row["frequency"],
                config,
                default_timezone=self.default_timezone,
                schedule_id=row["schedule_id"],
                created_at=row.get("created_at"),
                config_json=row["time_config_json"],
            )
        except InvalidScheduleError:
            # The row went invalid: its occurrences cannot be computed any more, but the one
            # it last planned (next_run) still falls due and will not run.
            planned = row.get("next_run")
            start, end = window
            if planned is not None and start < planned + timedelta(seconds=within) <= end:
                return float(within), [planned]
            return None
        occurrences = deadline_window_occurrences(
            spec, float(within), window, row.get("created_at")
        )
        return float(within), occurrences

    def _rule(self, row: Mapping[str, Any]) -> NotifyRule:
        notify = row.get("notify")
        if not notify:
            return self.default_rule
        try:
            return read_rule(notify)
        except InvalidScheduleError as exc:
            key = str(row["schedule_id"])
            if key not in self._bad_rules:  # a hand-made row: said once, not every pass
                self._bad_rules.add(key)
                log.warning("notify.bad_rule", schedule_id=key, error=str(exc))
            return NO_RULE
