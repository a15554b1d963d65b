"""`/v1/conversations` routes: parse, authorize, call the conversation service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from responsed.api.deps import conversations_of, project_of
from responsed.api.json import JSONBytes
from responsed.protocol.conversations import (
    CreateConversationRequest,
    CreateItemsRequest,
    UpdateConversationRequest,
)
from responsed.protocol.validation import parse_body
from responsed.runtime.conversations import ConversationService

__all__ = ["router"]

router = APIRouter()
PREFIX = "/v1/conversations"

Service = Annotated[ConversationService, Depends(conversations_of)]
Project = Annotated[str, Depends(project_of)]
Include = Annotated[list[str] | None, Query(alias="include[]")]


@router.post(PREFIX)
async def create_conversation(request: Request, service: Service, project: Project) -> Response:
    body = parse_body(CreateConversationRequest, await request.body())
    return JSONBytes(await service.create(body, project))


@router.get(PREFIX + "/{conversation_id}")
async def retrieve_conversation(
    conversation_id: str, service: Service, project: Project
) -> Response:
    return JSONBytes(await service.retrieve(project, conversation_id))


@router.post(PREFIX + "/{conversation_id}")
async def update_conversation(
    conversation_id: str, request: Request, service: Service, project: Project
) -> Response:
    body = parse_body(UpdateConversationRequest, await request.body())
    return JSONBytes(await service.update(project, conversation_id, body))


@router.delete(PREFIX + "/{conversation_id}")
async def delete_conversation(conversation_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.delete(project, conversation_id))


@router.get(PREFIX + "/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    service: Service,
    project: Project,
    after: str | None = None,
    limit: int = 20,
    order: str = "desc",
    include: Include = None,
) -> Response:
    page = await service.list_items(
        project, conversation_id, after=after, limit=limit, order=order, include=include
    )
    return JSONBytes(page)


@router.post(PREFIX + "/{conversation_id}/items")
async def create_items(
    conversation_id: str,
    request: Request,
    service: Service,
    project: Project,
    include: Include = None,
) -> Response:
    body = parse_body(CreateItemsRequest, await request.body())
    return JSONBytes(await service.create_items(project, conversation_id, body, include))


@router.get(PREFIX + "/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str, item_id: str, service: Service, project: Project, include: Include = None
) -> Response:
    return JSONBytes(await service.retrieve_item(project, conversation_id, item_id, include))


@router.delete(PREFIX + "/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str, item_id: str, service: Service, project: Project
) -> Response:
    return JSONBytes(await service.delete_item(project, conversation_id, item_id))
