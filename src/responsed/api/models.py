"""`/v1/models` and `/health`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from responsed.api.deps import project_of
from responsed.api.json import JSONBytes
from responsed.engines.registry import ModelRegistry
from responsed.protocol.errors import not_found

__all__ = ["router"]

router = APIRouter()


def _model_object(registry: ModelRegistry, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": registry.created_at, "owned_by": "responsed"}


@router.get("/v1/models", dependencies=[Depends(project_of)])
async def list_models(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    data = [_model_object(registry, name) for name in registry.engines]
    return JSONBytes({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", dependencies=[Depends(project_of)])
async def retrieve_model(model_id: str, request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    if registry.get(model_id) is None:
        raise not_found(
            f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return JSONBytes(_model_object(registry, model_id))


@router.get("/health")
async def health(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    return JSONBytes({"status": "ok", "models": list(registry.engines)})
