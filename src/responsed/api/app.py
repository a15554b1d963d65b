"""The ASGI app: one instance per settings, services built in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp

from responsed import __version__
from responsed.api import conversations, files, models, responses, vector_stores
from responsed.api.errors import install_error_handlers
from responsed.api.fastpath import FastPath
from responsed.api.limits import BodySizeLimit
from responsed.config import Settings
from responsed.engines.registry import ModelRegistry
from responsed.runtime.background import BackgroundRunner
from responsed.runtime.conversations import ConversationService
from responsed.runtime.files import FileService
from responsed.runtime.sealing import Sealer, load_keys
from responsed.runtime.service import ResponseService
from responsed.runtime.vector_stores import VectorStoreService
from responsed.runtime.webhooks import WebhookDispatcher
from responsed.store.blobs import BlobStore
from responsed.store.conversations import SQLiteConversationStore
from responsed.store.files import SQLiteFileStore
from responsed.store.jobs import SQLiteJobStore
from responsed.store.sqlite import SQLiteResponseStore
from responsed.store.vector_stores import SQLiteVectorStoreRepository
from responsed.store.webhooks import SQLiteWebhookStore
from responsed.vectors.embeddings import OpenAIEmbedder

__all__ = ["create_app"]

log = structlog.get_logger(__name__)


def create_app(settings: Settings) -> ASGIApp:
    registry = ModelRegistry(settings.models)
    store = SQLiteResponseStore(settings.data_dir / "responsed.sqlite3")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await store.open()
        await registry.start()
        app.state.models = registry
        sealer = Sealer(load_keys(settings.secret_keys, settings.data_dir))
        conversations = ConversationService(SQLiteConversationStore(store))
        file_service = FileService(
            SQLiteFileStore(store),
            BlobStore(settings.data_dir / "files"),
            max_file_bytes=settings.max_file_bytes,
        )
        file_service.open()
        vector_store_service = VectorStoreService(
            store, SQLiteVectorStoreRepository(store), file_service, embedder=_embedder(settings)
        )
        await vector_store_service.start()
        service = ResponseService(
            registry,
            store,
            sealer,
            conversations,
            files=file_service,
            vector_search=vector_store_service,
        )
        webhooks = WebhookDispatcher(
            SQLiteWebhookStore(store),
            settings.webhooks,
            retry_seconds=settings.webhook_retry_seconds,
            backoff_base=settings.webhook_backoff_seconds,
        )
        await webhooks.start()
        background = BackgroundRunner(
            service,
            SQLiteJobStore(store),
            lease_seconds=settings.background_lease_seconds,
            recovery=settings.background_recovery,
            notify=webhooks.notify,
        )
        await background.start()
        app.state.responses = service
        app.state.conversations = conversations
        app.state.files = file_service
        app.state.vector_stores = vector_store_service
        app.state.background = background
        app.state.api_keys = settings.api_keys
        log.info(
            "serving", models=list(registry.engines), data_dir=str(settings.data_dir.resolve())
        )
        try:
            yield
        finally:
            await background.aclose()
            await webhooks.aclose()  # before the store: its loop reads it
            await registry.aclose()
            await vector_store_service.aclose()  # before the store: its worker writes
            await store.aclose()

    app = FastAPI(
        title="responsed",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    app.include_router(responses.router)
    app.include_router(models.router)
    app.include_router(conversations.router)
    app.include_router(files.router)
    app.include_router(vector_stores.router)
    # An upload's limit is its file's, plus room for the multipart framing and fields.
    uploads = {("POST", files.UPLOAD_PATH): settings.max_file_bytes + 1024 * 1024}
    return BodySizeLimit(FastPath(app), settings.max_body_bytes, uploads)


def _embedder(settings: Settings) -> OpenAIEmbedder | None:
    """The configured embeddings upstream; None: the built-in model."""
    config = settings.embeddings
    if config is None:
        return None
    return OpenAIEmbedder(
        config.base_url, config.model, config.resolved_api_key(), dimensions=config.dimensions
    )
