"""An ASGI middleware that holds each request to the limits before the app sees it.

- Headers over `max_header_bytes` in all are 431. h11 bounds only what it buffers while a head
  is incomplete, so a large head that arrives in one read got through and one that arrives in
  two did not; here the bound is the same however the bytes arrive.
- A `Content-Length` over `max_body_bytes` is refused at once (413), before a byte of the body is
  read; a chunked body is cut off (413) as soon as it passes the limit.
- The whole body must arrive within `body_timeout` of the request head (408): a client that
  trickles its body holds a connection, never a worker thread (bodies are read on the event
  loop), and not for longer than this.
- A JSON body nested deeper, or with more members, than the limits is 422 naming the body,
  before any parser recurses into it.
Refusals that leave the body unread close the connection (`Connection: close`): what follows on
it would be the rest of that body, not a request. The app then gets the body as one message.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.web.json_shape import shape_problem
from services.web.limits import HttpLimits
from services.web.problems import problem_response

_CLOSE = {"Connection": "close"}


class _Refused(Exception):
    def __init__(self, status: int, detail: str, *, close: bool, field: str = "body") -> None:
        super().__init__(detail)
        self.field = field
        self.status = status
        self.detail = detail
        self.close = close


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():  # h11 refuses any other with 400
            return int(value)
    return None


def _is_json(scope: Scope) -> bool:
    """Whether the body may be parsed as JSON: no Content-Type, or a `*/json` or `*/*+json` one
    (FastAPI parses `application/` ones and none; checking a few more costs nothing)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            subtype = value.split(b";", 1)[0].strip().lower().rpartition(b"/")[2]
            return bool(subtype == b"json" or subtype.endswith(b"+json"))
    return True


class RequestGuard:
    def __init__(self, app: ASGIApp, limits: HttpLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_headers(scope)
            body = await self._read_body(scope, receive)
        except _Refused as refused:
            response = problem_response(
                refused.status,
                refused.detail,
                errors=[{"field": refused.field, "message": refused.detail}],
                headers=_CLOSE if refused.close else None,
            )
            await response(scope, receive, send)
            return
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_headers(self, scope: Scope) -> None:
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            raise _Refused(431, f"request headers over {limit} bytes", close=True, field="headers")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when the client went away before sending it."""
        limit = self.limits.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise _Refused(413, f"request body over {limit} bytes", close=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                detail = f"request body not received within {self.limits.body_timeout:g} s"
                raise _Refused(408, detail, close=True) from None
            if message["type"] == "http.disconnect":
                return None  # nobody is left to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"request body over {limit} bytes", close=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(scope):
            problem = shape_problem(
                body,
                max_depth=self.limits.max_json_depth,
                max_members=self.limits.max_json_members,
            )
            if problem is not None:
                raise _Refused(422, problem, close=False)
        return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the real `receive` (which reports the disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
