"""Who is calling: `Authorization: Bearer <token>` against `api_tokens`, and what they may do.

`read` may GET; `write` may also change schedules and runs; `admin` may also manage tokens. No
token, an unknown or a revoked one → 401; a role too low → 403. The token itself is never
logged or echoed: only its name appears anywhere (`api:<name>` in the audit trail).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, Request
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
        request: Request,
        context: Annotated[ApiContext, Depends(api_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if credentials is None or credentials.scheme.lower() != "bearer":
            refuse(request, context, "send Authorization: Bearer <token>")
        token = context.tokens.authenticate(credentials.credentials)
        if token is None:
            refuse(request, context, "unknown or revoked token")
        if _RANK[token.role] < _RANK[role.value]:
            raise Problem(403, f"token {token.name!r} has role {token.role}; this needs {role}")
        return Caller(token.name, token.role)

    return check


def client_address(request: Request) -> str:
    """The address the throttle counts a bad token against (the peer's: behind a proxy, the
    proxy's; no forwarded header is believed)."""
    return request.client.host if request.client is not None else ""


def refuse(request: Request, context: ApiContext, detail: str) -> NoReturn:
    """401; later once this client has sent too many bad tokens (auth_throttle.py)."""
    delay = context.auth_throttle.failed(client_address(request))
    raise Problem(401, detail, headers=_CHALLENGE, delay=delay)


Reader = Annotated[Caller, Depends(require(TokenRole.READ))]
Writer = Annotated[Caller, Depends(require(TokenRole.WRITE))]
Admin = Annotated[Caller, Depends(require(TokenRole.ADMIN))]
