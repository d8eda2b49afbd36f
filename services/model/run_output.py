"""A run's output as its handler recorded it, as one text: what the API shows with one run.

The handlers (services/engine/handlers/) keep output in `metadata`, and repeat in
`error_details` what explains a failure:

- command: `stdout_tail` and `stderr_tail` (the last 4096 bytes of each stream, decoded), with
  `stdout_bytes` / `stderr_bytes`, each stream's whole length;
- http: `http_status`, and the answer as `response` (a JSON answer of up to 4096 characters,
  parsed) or `body_tail` (its last 4096 characters); a failure repeats `body_tail`;
- python: the dict the callable returned (or `{"result": repr}`); an exception leaves its
  `traceback` tail in error_details.

A cut is marked with a leading "…", also when the handler had already kept only a tail.
"""

from __future__ import annotations

import json
from typing import Any

from services.model.records import Execution

__all__ = ["output_tail"]

ELLIPSIS = "…"
_STREAMS = ("stdout", "stderr")


def _mapping(value: object) -> dict[str, Any]:
    """A JSON column as a dict; a hand-made row may hold anything, or nothing."""
    return value if isinstance(value, dict) else {}


def _tail(text: str, max_chars: int, *, cut: bool = False) -> str:
    """The last characters of `text` within `max_chars`, "…" first when anything is missing."""
    if len(text) <= max_chars and not cut:
        return text
    keep = min(len(text), max_chars - 1)
    return ELLIPSIS + text[len(text) - keep :]


def _streams(meta: dict[str, Any], details: dict[str, Any]) -> list[tuple[str, str, bool]] | None:
    """(name, text, already cut) of each command stream with output; None if not a command's."""
    source = meta if any(f"{s}_tail" in meta for s in _STREAMS) else details
    if not any(f"{s}_tail" in source for s in _STREAMS):
        return None
    found = []
    for name in _STREAMS:
        text = source.get(f"{name}_tail")
        if not isinstance(text, str) or not text:
            continue
        total = source.get(f"{name}_bytes")
        cut = isinstance(total, int) and total > len(text.encode("utf-8"))
        found.append((name, text.rstrip("\n"), cut))
    return found


def _labelled(streams: list[tuple[str, str, bool]], max_chars: int) -> str:
    """`[stdout]` and `[stderr]` sections within `max_chars`: each stream gets an equal share
    of the room, and a share one of them leaves unused goes to the other."""
    headers = [f"[{name}]\n" for name, _, _ in streams]
    room = max_chars - sum(map(len, headers)) - (len(streams) - 1)  # newlines between sections
    if room < 2 * len(streams):  # no room for labels: the plain tail of everything
        return _tail("\n".join(text for _, text, _ in streams), max_chars)
    shares: dict[str, int] = {}
    left = room
    for index, (name, text, cut) in enumerate(sorted(streams, key=lambda s: len(s[1]) + s[2])):
        fair = left // (len(streams) - index)
        shares[name] = min(len(text) + cut, fair)
        left -= shares[name]
    sections = [
        header + _tail(text, shares[name], cut=cut)
        for header, (name, text, cut) in zip(headers, streams, strict=True)
    ]
    return "\n".join(sections)


def output_tail(execution: Execution, max_chars: int = 4000) -> str | None:
    """What the run printed (a command's `[stdout]` / `[stderr]`), answered (an http job's
    body) or returned or raised (a python job's result as JSON, or its traceback), in at most
    `max_chars` characters, keeping the end. None when its handler recorded no output (a
    skipped or running row, an http error before any answer, a command that printed nothing)."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a positive integer, got {max_chars!r}")
    meta, details = _mapping(execution.metadata), _mapping(execution.error_details)
    streams = _streams(meta, details)
    if streams is not None:
        return _labelled(streams, max_chars) if streams else None
    if "http_status" in meta or "http_status" in details:
        if "response" in meta:
            return _tail(json.dumps(meta["response"], ensure_ascii=False), max_chars)
        body = meta.get("body_tail", details.get("body_tail"))
        return _tail(body, max_chars) if isinstance(body, str) and body else None
    trace = details.get("traceback")
    if isinstance(trace, str) and trace:
        return _tail(trace, max_chars)
    if meta:
        return _tail(json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str), max_chars)
    return None
