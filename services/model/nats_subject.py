"""NATS subjects: what a valid one is, NATS wildcard matching, and a `nats` job's payload rules.

Pure (no I/O, no client library): the schedule validation at write time, the catalog at load time
and the handler at run time all judge a payload with these same functions.

A subject is dot-separated tokens. In a pattern `*` matches exactly one token and `>` (last token
only) matches one or more remaining tokens, as the NATS server itself matches subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# The server refuses control lines over its max_control_line (4 KiB by default); a subject this
# long is a mistake, not a name.
MAX_SUBJECT_LENGTH = 1024


def _token_problem(subject: str) -> str | None:
    if not subject:
        return "must not be empty"
    if len(subject) > MAX_SUBJECT_LENGTH:
        return f"must be at most {MAX_SUBJECT_LENGTH} characters"
    if any(ch.isspace() for ch in subject):
        return "must not contain whitespace"
    if "" in subject.split("."):
        return "must not have an empty token (a leading, trailing or doubled '.')"
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid NATS subject pattern (wildcards allowed), or None."""
    problem = _token_problem(pattern)
    if problem is not None:
        return problem
    tokens = pattern.split(".")
    for index, token in enumerate(tokens):
        if len(token) > 1 and ("*" in token or ">" in token):
            return f"token {token!r} mixes a wildcard with other characters"
        if token == ">" and index != len(tokens) - 1:
            return "'>' may only be the last token"
    return None


def subject_problem(subject: str) -> str | None:
    """Why `subject` cannot be published to (wildcards are for subscribers), or None."""
    problem = _token_problem(subject)
    if problem is not None:
        return problem
    if any(token in ("*", ">") for token in subject.split(".")):
        return "must not contain the wildcards '*' or '>' (a message goes to one subject)"
    return None


def subject_matches(pattern: str, subject: str) -> bool:
    """True when the NATS pattern (with `*` and `>`) matches the concrete subject."""
    wanted = pattern.split(".")
    given = subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index  # '>' needs at least one token to stand for
        if index >= len(given):
            return False
        if token != "*" and token != given[index]:
            return False
    return len(given) == len(wanted)


def subject_allowed(subject: str, allowlist: Iterable[str]) -> bool:
    return any(subject_matches(pattern, subject) for pattern in allowlist)


def nats_payload_problems(
    payload: Mapping[str, Any], allowlist: Iterable[str] | None = None
) -> list[str]:
    """What is wrong with a `nats` job's payload; the allowlist is checked only when given
    (the schedule writers do not know the daemon's NATS_SUBJECT_ALLOWLIST)."""
    problems: list[str] = []
    subject = payload.get("subject")
    if not isinstance(subject, str):
        problems.append(f"a nats job needs payload.subject as a string, got {subject!r}")
    else:
        problem = subject_problem(subject)
        if problem is not None:
            problems.append(f"payload.subject {subject!r} {problem}")
        elif allowlist is not None and not subject_allowed(subject, allowlist):
            problems.append(
                f"payload.subject {subject!r} matches no entry of NATS_SUBJECT_ALLOWLIST; "
                "add it (or a pattern such as 'jobs.>') there to allow this job"
            )
    request = payload.get("request", False)
    if not isinstance(request, bool):
        problems.append(f"payload.request must be true or false, got {request!r}")
    return problems
