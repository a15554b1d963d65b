"""Every non-2xx answer is the OpenAI error envelope, never an HTML page or `detail`."""

from __future__ import annotations

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from responsed.protocol.errors import APIError
from responsed.protocol.validation import param_path

__all__ = ["error_response", "install_error_handlers"]

log = structlog.get_logger(__name__)

_STATUS_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_response(error: APIError) -> Response:
    return Response(
        orjson.dumps(error.envelope()),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        param = param_path(tuple(p for p in first["loc"] if p not in ("query", "path", "body")))
        return error_response(
            APIError(400, f"Invalid '{param}': {first['msg']}.", param=param, code="invalid_value")
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        kind, code = _STATUS_TYPES.get(exc.status_code, ("invalid_request_error", None))
        message = str(exc.detail) if exc.status_code != 404 else "Not found."
        return error_response(APIError(exc.status_code, message, type=kind, code=code))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            APIError(
                500,
                "The server had an error while processing your request.",
                type="server_error",
                code="server_error",
            )
        )
