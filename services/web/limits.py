"""What the HTTP server grants one client: body size, read deadlines, open connections, JSON shape.

Built once from the settings (`HTTP_MAX_BODY_BYTES`, `HTTP_HEADER_TIMEOUT`, `HTTP_BODY_TIMEOUT`,
`HTTP_MAX_CONNECTIONS`) and handed to the protocol (connections.py) and the request guard
(request_guard.py). The JSON bounds are fixed: no document of this API comes near them, and a parser
that recursed without one would end in a RecursionError (a 500) instead of a 422.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.config import Settings

MAX_JSON_DEPTH = 64  # arrays and objects inside each other
MAX_JSON_MEMBERS = 10_000  # object members and array items in one body, all levels together
MAX_HEADER_BYTES = 16 * 1024  # all header lines of a request: h11's own bound on an incomplete head


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_body_bytes: int = 1 << 20
    header_timeout: float = 10.0  # from a connection's start (or its last answer) to a request head
    body_timeout: float = 30.0  # from the request head to the end of its body
    max_connections: int = 256  # beyond: the longest-idle connection is closed, else the new one
    max_header_bytes: int = MAX_HEADER_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    max_json_members: int = MAX_JSON_MEMBERS

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_body_bytes=settings.http_max_body_bytes,
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            max_connections=settings.http_max_connections,
        )
