"""`/v1/vector_stores` routes: parse, authorize, call the vector store service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from responsed.api.deps import project_of
from responsed.api.json import JSONBytes
from responsed.protocol.validation import parse_body
from responsed.protocol.vector_stores import (
    CreateBatchRequest,
    CreateFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateFileRequest,
    UpdateVectorStoreRequest,
)
from responsed.runtime.vector_stores import VectorStoreService

__all__ = ["router"]

router = APIRouter()
PREFIX = "/v1/vector_stores"
STORE = PREFIX + "/{store_id}"
FILE = STORE + "/files/{file_id}"
BATCH = STORE + "/file_batches/{batch_id}"
# The SDK's poll helpers wait this long between polls when the server says so.
POLL_AFTER_MS = "200"


async def vector_stores_of(request: Request) -> VectorStoreService:
    service: VectorStoreService = request.app.state.vector_stores
    return service


Service = Annotated[VectorStoreService, Depends(vector_stores_of)]
Project = Annotated[str, Depends(project_of)]
StatusFilter = Annotated[str | None, Query(alias="filter")]


def _polled(obj: dict[str, Any], busy: bool) -> Response:
    headers = {"openai-poll-after-ms": POLL_AFTER_MS} if busy else None
    return JSONBytes(obj, headers=headers)


# -- vector stores -------------------------------------------------------------------


@router.post(PREFIX)
async def create_store(request: Request, service: Service, project: Project) -> Response:
    body = parse_body(CreateVectorStoreRequest, await request.body())
    return JSONBytes(await service.create_store(project, body))


@router.get(PREFIX)
async def list_stores(
    service: Service,
    project: Project,
    limit: int = 20,
    after: str | None = None,
    before: str | None = None,
    order: str = "desc",
) -> Response:
    page = await service.list_stores(project, limit=limit, after=after, before=before, order=order)
    return JSONBytes(page)


@router.get(STORE)
async def retrieve_store(store_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.retrieve_store(project, store_id))


@router.post(STORE)
async def update_store(
    store_id: str, request: Request, service: Service, project: Project
) -> Response:
    body = parse_body(UpdateVectorStoreRequest, await request.body())
    return JSONBytes(await service.update_store(project, store_id, body))


@router.delete(STORE)
async def delete_store(store_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.delete_store(project, store_id))


@router.post(STORE + "/search")
async def search(store_id: str, request: Request, service: Service, project: Project) -> Response:
    body = parse_body(SearchRequest, await request.body())
    return JSONBytes(await service.search_page(project, store_id, body))


# -- files ---------------------------------------------------------------------------


@router.post(STORE + "/files")
async def create_file(
    store_id: str, request: Request, service: Service, project: Project
) -> Response:
    body = parse_body(CreateFileRequest, await request.body())
    return JSONBytes(await service.create_file(project, store_id, body))


@router.get(STORE + "/files")
async def list_files(
    store_id: str,
    service: Service,
    project: Project,
    status: StatusFilter = None,
    limit: int = 20,
    after: str | None = None,
    before: str | None = None,
    order: str = "desc",
) -> Response:
    page = await service.list_files(
        project, store_id, status=status, limit=limit, after=after, before=before, order=order
    )
    return JSONBytes(page)


@router.get(FILE)
async def retrieve_file(
    store_id: str, file_id: str, service: Service, project: Project
) -> Response:
    obj = await service.retrieve_file(project, store_id, file_id)
    return _polled(obj, obj["status"] == "in_progress")


@router.post(FILE)
async def update_file(
    store_id: str, file_id: str, request: Request, service: Service, project: Project
) -> Response:
    body = parse_body(UpdateFileRequest, await request.body())
    return JSONBytes(await service.update_file(project, store_id, file_id, body))


@router.delete(FILE)
async def delete_file(store_id: str, file_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.delete_file(project, store_id, file_id))


@router.get(FILE + "/content")
async def file_content(store_id: str, file_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.file_content(project, store_id, file_id))


# -- file batches --------------------------------------------------------------------


@router.post(STORE + "/file_batches")
async def create_batch(
    store_id: str, request: Request, service: Service, project: Project
) -> Response:
    body = parse_body(CreateBatchRequest, await request.body())
    return JSONBytes(await service.create_batch(project, store_id, body))


@router.get(BATCH)
async def retrieve_batch(
    store_id: str, batch_id: str, service: Service, project: Project
) -> Response:
    obj = await service.retrieve_batch(project, store_id, batch_id)
    return _polled(obj, obj["file_counts"]["in_progress"] > 0)


@router.post(BATCH + "/cancel")
async def cancel_batch(
    store_id: str, batch_id: str, service: Service, project: Project
) -> Response:
    return JSONBytes(await service.cancel_batch(project, store_id, batch_id))


@router.get(BATCH + "/files")
async def list_batch_files(
    store_id: str,
    batch_id: str,
    service: Service,
    project: Project,
    status: StatusFilter = None,
    limit: int = 20,
    after: str | None = None,
    before: str | None = None,
    order: str = "desc",
) -> Response:
    page = await service.list_files(
        project,
        store_id,
        batch_id=batch_id,
        status=status,
        limit=limit,
        after=after,
        before=before,
        order=order,
    )
    return JSONBytes(page)
