"""The `web_sessions` table's store: dashboard logins, kept as SHA-256 of the session id only.

A session is made from a live API token and dies with it: the lookup joins `api_tokens`, so a
revoked token logs its browsers out on their next request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from database.connection import DatabaseConnection
from database.queries import load_queries

__all__ = ["SESSION_LIFETIME", "WebSession", "WebSessionStore"]

_SQL = load_queries("web_sessions")
SESSION_LIFETIME = 12 * 3600.0  # a working day; then log in again
_MAX_SESSION_ID = 128


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    token_name: str
    role: str
    csrf_token: str
    expires_at: datetime


class WebSessionStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def create(
        self, token_name: str, role: str, lifetime: float = SESSION_LIFETIME
    ) -> tuple[str, WebSession] | None:
        """A new session of `token_name` (just authenticated): the cookie's session id and the
        session; None when the token was revoked meanwhile."""
        session_id = secrets.token_urlsafe(32)
        params = {
            "session_sha256": _digest(session_id),
            "token_name": token_name,
            "csrf_token": secrets.token_urlsafe(32),
            "lifetime": lifetime,
        }
        self.db.execute(_SQL["delete_expired_sessions"])
        row = self.db.fetch_one(_SQL["insert_session"], params)
        if row is None:
            return None
        return session_id, WebSession(row["token_name"], role, row["csrf_token"], row["expires_at"])

    def get(self, session_id: str) -> WebSession | None:
        if not session_id or len(session_id) > _MAX_SESSION_ID or not session_id.isascii():
            return None
        row = self.db.fetch_one(_SQL["get_session"], {"session_sha256": _digest(session_id)})
        if row is None:
            return None
        return WebSession(row["token_name"], row["role"], row["csrf_token"], row["expires_at"])

    def delete(self, session_id: str) -> None:
        if session_id and len(session_id) <= _MAX_SESSION_ID and session_id.isascii():
            self.db.execute(_SQL["delete_session"], {"session_sha256": _digest(session_id)})
