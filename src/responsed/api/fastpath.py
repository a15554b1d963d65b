"""The hottest endpoint served in front of the framework.

`POST /v1/responses` is nearly all of a gateway's traffic. Taking it through
Starlette's middleware stack and router costs tens of microseconds per request, a
noticeable share of the 1 ms overhead budget, for nothing it needs: it is the same
handler the router would call, with the same error envelope. Everything else goes to
the FastAPI app.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from responsed.api.errors import error_response
from responsed.api.responses import PREFIX, create_response
from responsed.protocol.errors import APIError

__all__ = ["FastPath"]

log = structlog.get_logger(__name__)


class FastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREFIX or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # what `request.app.state` reads
        try:
            response = await create_response(Request(scope, receive))
        except APIError as exc:
            response = error_response(exc)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            response = error_response(
                APIError(
                    500,
                    "The server had an error while processing your request.",
                    type="server_error",
                    code="server_error",
                )
            )
        await response(scope, receive, send)
