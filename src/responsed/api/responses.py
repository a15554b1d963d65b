"""`/v1/responses` routes: parse, authorize, call the service, frame the result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from responsed.api.deps import project_of, service_of
from responsed.api.json import JSONBytes
from responsed.api.sse import sse_stream
from responsed.protocol.errors import invalid_request
from responsed.protocol.request import (
    CompactRequest,
    CreateResponseRequest,
    InputTokensRequest,
)
from responsed.protocol.validation import parse_body
from responsed.runtime.service import ResponseService

__all__ = ["router"]

router = APIRouter()
PREFIX = "/v1/responses"

Service = Annotated[ResponseService, Depends(service_of)]
Project = Annotated[str, Depends(project_of)]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def create_response(request: Request) -> Response:
    """The hot path, as a plain Starlette route: no dependency solving per request."""
    project = await project_of(request)
    service = await service_of(request)
    body = parse_body(CreateResponseRequest, await request.body())
    run = await service.create(body, project)
    if body.stream:
        return StreamingResponse(
            sse_stream(run.events()), media_type="text/event-stream", headers=SSE_HEADERS
        )
    return JSONBytes(await run.collect())


router.add_route(PREFIX, create_response, methods=["POST"])


@router.post(PREFIX + "/input_tokens")
async def count_input_tokens(request: Request, service: Service, project: Project) -> Response:
    body = parse_body(InputTokensRequest, await request.body())
    return JSONBytes(await service.input_tokens(body, project))


@router.post(PREFIX + "/compact")
async def compact_response(request: Request, service: Service, project: Project) -> Response:
    body = parse_body(CompactRequest, await request.body())
    return JSONBytes(await service.compact(body, project))


@router.get(PREFIX + "/{response_id}")
async def retrieve_response(
    response_id: str,
    service: Service,
    project: Project,
    stream: bool = False,
    starting_after: int | None = None,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    del starting_after, include  # stream replay needs background mode; include: nothing yet
    body = await service.retrieve(project, response_id)
    if stream:
        raise invalid_request(
            "Only responses created with background=true can be streamed again.",
            param="stream",
        )
    return JSONBytes(body)


@router.delete(PREFIX + "/{response_id}")
async def delete_response(response_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.delete(project, response_id))


@router.post(PREFIX + "/{response_id}/cancel")
async def cancel_response(response_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.cancel(project, response_id))


@router.get(PREFIX + "/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    service: Service,
    project: Project,
    after: str | None = None,
    limit: Annotated[int, Query()] = 20,
    order: Literal["asc", "desc"] = "desc",
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    del include  # accepted; input items carry no optional parts yet
    page: dict[str, Any] = await service.input_items(
        project, response_id, after=after, limit=limit, order=order
    )
    return JSONBytes(page)
