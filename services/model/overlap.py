"""Overlap policies: what an occurrence does when an earlier run of its schedule is still going.

`time_config.overlap_policy` (contract, DESIGN.md "Overlap policies and backfill"). The decision
is pure: the engine knows whether an earlier run holds the schedule's lock and how many
occurrences already wait (`queued` rows), and asks `decide` what to do.
"""

from __future__ import annotations

from enum import StrEnum

from services.model.shapes import got

DEFAULT_MAX_BUFFERED = 100
MAX_BUFFERED = 10_000


class OverlapPolicy(StrEnum):
    SKIP = "skip"  # recorded skipped, "previous run still going" (the default, as before)
    BUFFER_ONE = "buffer_one"  # one waits; later ones while it waits are skipped
    BUFFER_ALL = "buffer_all"  # all wait, in order, at most max_buffered
    CANCEL_OTHER = "cancel_other"  # the running run is asked to stop, then this one starts
    TERMINATE_OTHER = "terminate_other"  # the same, killed at once
    ALLOW_ALL = "allow_all"  # runs overlap: one lock per occurrence


class Decision(StrEnum):
    RUN = "run"
    QUEUE = "queue"  # recorded `queued`: starts when the earlier run ends
    SKIP = "skip"
    REPLACE = "replace"  # queued, and the earlier run is stopped


BUFFERING = frozenset({OverlapPolicy.BUFFER_ONE, OverlapPolicy.BUFFER_ALL})
REPLACING = frozenset({OverlapPolicy.CANCEL_OTHER, OverlapPolicy.TERMINATE_OTHER})
QUEUEING = BUFFERING | REPLACING  # policies whose occurrences may wait as `queued` rows


def read_policy(value: object, problems: list[str]) -> OverlapPolicy:
    """time_config.overlap_policy (None: the default); a bad value adds a problem."""
    if value is None:
        return OverlapPolicy.SKIP
    if isinstance(value, str):
        try:
            return OverlapPolicy(value)
        except ValueError:
            pass
    accepted = ", ".join(policy.value for policy in OverlapPolicy)
    problems.append(f"time_config.overlap_policy must be one of {accepted}, got {got(value)}")
    return OverlapPolicy.SKIP


def decide(
    policy: OverlapPolicy, *, earlier_running: bool, waiting: int, max_buffered: int
) -> tuple[Decision, str]:
    """What an occurrence does, and why. `earlier_running`: an earlier run holds the schedule's
    lock. `waiting`: occurrences of the schedule already `queued` ahead of this one (a backfill
    is not counted: it waits for a free lock and never jumps ahead of live occurrences)."""
    if policy is OverlapPolicy.ALLOW_ALL or (not earlier_running and waiting == 0):
        return Decision.RUN, "no earlier run going"
    if policy is OverlapPolicy.SKIP:
        return Decision.SKIP, "previous run still going"
    if policy is OverlapPolicy.BUFFER_ALL:
        if waiting < max_buffered:
            return Decision.QUEUE, f"waiting for the earlier run ({waiting} ahead)"
        return Decision.SKIP, f"buffer_all: max_buffered ({max_buffered}) occurrences waiting"
    if waiting > 0:
        return Decision.SKIP, f"{policy.value}: an occurrence is already waiting"
    if policy is OverlapPolicy.BUFFER_ONE:
        return Decision.QUEUE, "waiting for the earlier run"
    if not earlier_running:  # the lock is free but one waits: it goes first
        return Decision.QUEUE, "waiting for the occurrence ahead"
    return Decision.REPLACE, "replacing the earlier run"


def replaced_reason(scheduled_for_iso: str) -> str:
    """The `cancelled` row's message of a run stopped by a newer occurrence."""
    return f"replaced by the occurrence of {scheduled_for_iso}"
