"""Per-request dependencies: the app's services and the caller's project."""

from __future__ import annotations

import hmac

from fastapi import Request

from responsed.protocol.errors import APIError
from responsed.runtime.conversations import ConversationService
from responsed.runtime.service import ResponseService
from responsed.store.base import DEFAULT_PROJECT

__all__ = ["conversations_of", "project_of", "service_of"]


async def service_of(request: Request) -> ResponseService:
    service: ResponseService = request.app.state.responses
    return service


async def conversations_of(request: Request) -> ConversationService:
    service: ConversationService = request.app.state.conversations
    return service


async def project_of(request: Request) -> str:
    """Authorize the caller and return its project id.

    With no API keys configured (loopback only) every caller is the default project.
    """
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return DEFAULT_PROJECT
    header = request.headers.get("authorization", "")
    token = header[7:] if header[:7].lower() == "bearer " else ""
    if not any(hmac.compare_digest(token, key) for key in keys):
        raise APIError(
            401,
            "Incorrect API key provided." if token else "You didn't provide an API key.",
            code="invalid_api_key",
        )
    return DEFAULT_PROJECT
