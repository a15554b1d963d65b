"""Request body size limit as plain ASGI: refuse early, never buffer an oversized body."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from responsed.protocol.errors import APIError

__all__ = ["BodySizeLimit"]


class _TooLarge(APIError):
    """Raised from `receive`, so the app's APIError handler renders the 413."""


class BodySizeLimit:
    """`max_bytes` for every route, except the `(method, path)` pairs in `routes`, which
    have limits of their own (file uploads)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, routes: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get((scope["method"], scope["path"]), self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, limit)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(413, self._message(limit), code="request_too_large")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, limit)

    def _message(self, limit: int) -> str:
        return f"Request body too large: the limit is {limit} bytes."

    async def _reject(self, send: Send, limit: int) -> None:
        error = APIError(413, self._message(limit), code="request_too_large")
        body = orjson.dumps(error.envelope())
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
