"""The `api_tokens` table's store: tokens for the management API, kept as SHA-256 only.

A token is shown once, when it is created; the table holds its SHA-256 (hex), so a copy of the
database gives nobody a usable token.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import DatabaseError, InvalidTokenRequest, TokenExists
from services.model.records import ApiToken
from services.model.vocabulary import TokenRole

__all__ = ["TOKEN_PREFIX", "TokenStore", "hash_token"]

_SQL = load_queries("api_tokens")
TOKEN_PREFIX = "es_"  # recognisable in a leaked config file or a secret scanner
_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_MAX_TOKEN_LENGTH = 256


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _role(role: str) -> str:
    try:
        return TokenRole(role).value
    except ValueError:
        accepted = ", ".join(r.value for r in TokenRole)
        raise InvalidTokenRequest(f"role {role!r} is not one of: {accepted}") from None


def _name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidTokenRequest(
            f"token name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
        )
    return name


class TokenStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def create(self, name: str, role: str = TokenRole.READ.value) -> tuple[ApiToken, str]:
        """A new token: its record and the token itself, which is never available again."""
        params = {"name": _name(name), "role": _role(role)}
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            row = self.db.fetch_one(
                _SQL["insert_token"], {**params, "token_sha256": hash_token(token)}
            )
        except DatabaseError as exc:
            if exc.constraint == "api_tokens_name_key":
                raise TokenExists(name) from None
            raise
        assert row is not None
        return ApiToken.from_row(row), token

    def list(self) -> builtins.list[ApiToken]:
        """Every token, revoked ones included, without hashes."""
        return [ApiToken.from_row(row) for row in self.db.fetch_all(_SQL["list_tokens"])]

    def revoke(self, name: str) -> bool:
        """Revoke a token; False when no token has that name. Revoking twice is harmless."""
        if self.db.execute(_SQL["revoke_token"], {"name": name}):
            return True
        return bool(self.db.fetch_value(_SQL["token_exists"], {"name": name}))

    def authenticate(self, token: str) -> ApiToken | None:
        """The live token `token` is, or None (unknown, revoked or malformed)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
            return None
        row = self.db.fetch_one(_SQL["authenticate_token"], {"token_sha256": hash_token(token)})
        return None if row is None else ApiToken.from_row(row)
