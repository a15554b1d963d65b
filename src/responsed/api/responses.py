"""`/v1/responses` routes: parse, authorize, call the service, frame the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from responsed.api.deps import project_of, service_of
from responsed.api.json import JSONBytes
from responsed.api.sse import sse_stream
from responsed.protocol.request import (
    CompactRequest,
    CreateResponseRequest,
    InputTokensRequest,
)
from responsed.protocol.validation import parse_body
from responsed.runtime.background import BackgroundRunner
from responsed.runtime.service import ResponseService

__all__ = ["router"]

router = APIRouter()
PREFIX = "/v1/responses"

Service = Annotated[ResponseService, Depends(service_of)]
Project = Annotated[str, Depends(project_of)]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _runner(request: Request) -> BackgroundRunner:
    runner: BackgroundRunner = request.app.state.background
    return runner


def _sse(events: AsyncIterator[dict[str, Any]]) -> Response:
    return StreamingResponse(
        sse_stream(events), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def create_response(request: Request) -> Response:
    """The hot path, as a plain Starlette route: no dependency solving per request."""
    project = await project_of(request)
    service = await service_of(request)
    raw = await request.body()
    body = parse_body(CreateResponseRequest, raw)
    if body.background:
        queued, stream = await _runner(request).submit(body, raw, project)
        return JSONBytes(queued) if stream is None else _sse(stream)
    run = await service.create(body, project)
    if body.stream:
        return _sse(run.events())
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
    request: Request,
    response_id: str,
    service: Service,
    project: Project,
    stream: bool = False,
    starting_after: int | None = None,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    del include  # accepted; stored responses carry what was included when created
    if stream:
        return _sse(await _runner(request).stream(project, response_id, starting_after))
    return JSONBytes(await service.retrieve(project, response_id))


@router.delete(PREFIX + "/{response_id}")
async def delete_response(
    request: Request, response_id: str, service: Service, project: Project
) -> Response:
    deleted = await service.delete(project, response_id)
    _runner(request).abandon((project, response_id))  # a background run stops at once
    return JSONBytes(deleted)


@router.post(PREFIX + "/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str, project: Project) -> Response:
    return JSONBytes(await _runner(request).cancel(project, response_id))


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
