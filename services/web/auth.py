"""Who is calling: `Authorization: Bearer <token>` against `api_tokens`, and what they may do.

`read` may GET; `write` may also change schedules and runs; `admin` may also manage tokens. No
token, an unknown or a revoked one → 401; a role too low → 403. The token itself is never
logged or echoed: only its name appears anywhere (`api:<name>` in the audit trail).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.model.vocabulary import TokenRole
from services.web.context import ApiContext, api_context
from services.web.problems import Problem

_RANK = {TokenRole.READ.value: 0, TokenRole.WRITE.value: 1, TokenRole.ADMIN.value: 2}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="enhanced-scheduler"'}
bearer = HTTPBearer(auto_error=False, description="an API token (`scheduler.py token create`)")


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the token's name
    role: str

    @property
    def actor(self) -> str:
        """What the audit trail and created_by record for this caller's changes."""
        return f"api:{self.name}"


def require(role: TokenRole) -> Callable[..., Caller]:
    """A dependency that lets through callers with at least `role`."""

    def check(
        context: Annotated[ApiContext, Depends(api_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem(401, "send Authorization: Bearer <token>", headers=_CHALLENGE)
        token = context.tokens.authenticate(credentials.credentials)
        if token is None:
            raise Problem(401, "unknown or revoked token", headers=_CHALLENGE)
        if _RANK[token.role] < _RANK[role.value]:
            raise Problem(403, f"token {token.name!r} has role {token.role}; this needs {role}")
        return Caller(token.name, token.role)

    return check


Reader = Annotated[Caller, Depends(require(TokenRole.READ))]
Writer = Annotated[Caller, Depends(require(TokenRole.WRITE))]
Admin = Annotated[Caller, Depends(require(TokenRole.ADMIN))]
