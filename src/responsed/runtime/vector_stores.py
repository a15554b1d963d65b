"""The Vector Stores API, background ingestion, and search for `file_search`.
Over 400 lines because the API operations and the ingestion worker share one state machine
(a file's status and generation); splitting them would split that machine.

Ingestion: attaching a file writes its row `in_progress`; one worker task takes the
oldest such row of any project, reads the file (FileService), extracts and chunks the
text on a thread, embeds the chunks (the shared embedder uses the CPU, so one file at a
time) and indexes them, then records the outcome. The queue is the rows themselves, so
files left `in_progress` by a stopped server are ingested again on the next start. A
file detached, cancelled or attached again while it was being processed keeps its new
state: the stale job's outcome is refused and its chunks dropped.

`usage_bytes` of a file is the UTF-8 size of its stored chunk texts (overlaps counted
each time they are stored); a store's is the sum over its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

import structlog

from responsed.protocol.errors import APIError, invalid_request, not_found
from responsed.protocol.ids import new_id
from responsed.protocol.vector_stores import (
    ChunkingParam,
    CreateBatchRequest,
    CreateFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateFileRequest,
    UpdateVectorStoreRequest,
)
from responsed.runtime.file_text import UnreadableFile, extract_text
from responsed.runtime.files import FileService
from responsed.store.sqlite import SQLiteResponseStore
from responsed.store.vector_stores import (
    STATUSES,
    BatchRow,
    NewFile,
    PendingFile,
    StoreRow,
    VectorStoreRepository,
    VSFileRow,
)
from responsed.vectors.chunking import Chunk, ChunkingError, ChunkingStrategy, chunk_text
from responsed.vectors.embeddings import Embedder, EmbeddingError, LocalEmbedder, OpenAIEmbedder
from responsed.vectors.filters import FilterError
from responsed.vectors.index import Ranker, VectorIndex

__all__ = ["VectorStoreService", "store_not_found"]

log = structlog.get_logger(__name__)

Result = dict[str, Any]
_RANKERS: dict[str, Ranker] = {r: r for r in ("none", "auto", "default-2024-11-15")}
_RETRY_PAUSE_S = 1.0  # after an unexpected worker error, so a fault cannot spin the loop


def store_not_found(store_id: str) -> APIError:
    return not_found(f"No vector store found with id '{store_id}'.")


def _file_not_in_store(file_id: str, store_id: str) -> APIError:
    return not_found(f"No file found with id '{file_id}' in vector store '{store_id}'.")


def _strategy(param: ChunkingParam | None, where: str) -> ChunkingStrategy:
    try:
        return ChunkingStrategy.from_param(None if param is None else param.model_dump())
    except ChunkingError as exc:
        message, field = str(exc), exc.param
        code = (
            "integer_below_min_value"
            if "below minimum" in message
            else "integer_above_max_value"
            if "above maximum" in message
            else "invalid_value"
        )
        if where:
            message = message.replace("'chunking_strategy", f"'{where}.chunking_strategy")
            field = f"{where}.{field}"
        raise invalid_request(message, param=field, code=code) from None


def _check_list(limit: int, order: str) -> Literal["asc", "desc"]:
    if not 1 <= limit <= 100:
        raise invalid_request(
            f"Invalid 'limit': expected an integer between 1 and 100, but got {limit}.",
            param="limit",
            code="integer_below_min_value" if limit < 1 else "integer_above_max_value",
        )
    if order not in ("asc", "desc"):
        raise invalid_request(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return "asc" if order == "asc" else "desc"


def _page(data: list[Result], has_more: bool) -> Result:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _chunks(filename: str, data: bytes, strategy: ChunkingStrategy) -> list[Chunk]:
    return chunk_text(extract_text(filename, data), strategy)


class VectorStoreService:
    def __init__(
        self,
        db: SQLiteResponseStore,
        repo: VectorStoreRepository,
        files: FileService,
        embedder: Embedder | None = None,
    ) -> None:
        self._db = db
        self._repo = repo
        self._files = files
        self._embedder: Embedder = embedder if embedder is not None else LocalEmbedder()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        files.on_delete.append(self.file_deleted)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the ingestion worker; it first takes any file left in progress."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="vector-store-ingest")

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if isinstance(self._embedder, LocalEmbedder):
            self._embedder.close()
        elif isinstance(self._embedder, OpenAIEmbedder):
            await self._embedder.aclose()

    # -- vector stores -------------------------------------------------------------

    async def create_store(self, project_id: str, body: CreateVectorStoreRequest) -> Result:
        strategy = _strategy(body.chunking_strategy, "").to_param()
        file_ids = list(dict.fromkeys(body.file_ids or ()))
        for index, file_id in enumerate(file_ids):
            await self._require_file(project_id, file_id, f"file_ids[{index}]")
        now = int(time.time())
        row = StoreRow(
            id=new_id("vs"),
            created_at=now,
            name=body.name or "",
            description=body.description,
            metadata=body.metadata,
            expires_after=None if body.expires_after is None else body.expires_after.model_dump(),
            last_active_at=now,
        )
        await self._repo.create_store(
            project_id, row, [NewFile(f, None, strategy) for f in file_ids]
        )
        self._wake.set()
        return await self.retrieve_store(project_id, row.id)

    async def list_stores(
        self, project_id: str, *, limit: int, after: str | None, before: str | None, order: str
    ) -> Result:
        direction = _check_list(limit, order)
        rows, more = await self._repo.page_stores(
            project_id, limit=limit, after=after, before=before, order=direction
        )
        now = int(time.time())
        return _page([r.wire(now) for r in rows], more)

    async def retrieve_store(self, project_id: str, store_id: str) -> Result:
        return (await self._store(project_id, store_id)).wire(int(time.time()))

    async def update_store(
        self, project_id: str, store_id: str, body: UpdateVectorStoreRequest
    ) -> Result:
        await self._store(project_id, store_id)
        changes: dict[str, Any] = {}
        given = body.model_fields_set
        if "name" in given and body.name is not None:
            changes["name"] = body.name
        if "metadata" in given:
            changes["metadata"] = body.metadata
        if "expires_after" in given:
            expires = body.expires_after
            changes["expires_after"] = None if expires is None else expires.model_dump()
        if changes:
            await self._repo.update_store(project_id, store_id, changes)
        return await self.retrieve_store(project_id, store_id)

    async def delete_store(self, project_id: str, store_id: str) -> Result:
        if not await self._repo.delete_store(project_id, store_id):
            raise store_not_found(store_id)
        await VectorIndex(self._db, project_id).delete_store(store_id)
        return {"id": store_id, "object": "vector_store.deleted", "deleted": True}

    # -- vector store files --------------------------------------------------------

    async def create_file(self, project_id: str, store_id: str, body: CreateFileRequest) -> Result:
        await self._store(project_id, store_id)
        strategy = _strategy(body.chunking_strategy, "").to_param()
        await self._require_file(project_id, body.file_id, "file_id")
        new = NewFile(body.file_id, body.attributes, strategy)
        await self._repo.add_files(project_id, store_id, [new], int(time.time()))
        self._wake.set()
        return await self.retrieve_file(project_id, store_id, body.file_id)

    async def list_files(
        self,
        project_id: str,
        store_id: str,
        *,
        batch_id: str | None = None,
        status: str | None,
        limit: int,
        after: str | None,
        before: str | None,
        order: str,
    ) -> Result:
        direction = _check_list(limit, order)
        if status is not None and status not in STATUSES:
            supported = ", ".join(f"'{s}'" for s in STATUSES)
            raise invalid_request(
                f"Invalid value: '{status}'. Supported values are: {supported}.",
                param="filter",
                code="invalid_value",
            )
        await self._store(project_id, store_id)
        if batch_id is not None:
            await self._batch(project_id, store_id, batch_id)
        rows, more = await self._repo.page_files(
            project_id,
            store_id,
            batch_id=batch_id,
            status=status,
            limit=limit,
            after=after,
            before=before,
            order=direction,
        )
        return _page([r.wire() for r in rows], more)

    async def retrieve_file(self, project_id: str, store_id: str, file_id: str) -> Result:
        return (await self._file(project_id, store_id, file_id)).wire()

    async def update_file(
        self, project_id: str, store_id: str, file_id: str, body: UpdateFileRequest
    ) -> Result:
        await self._file(project_id, store_id, file_id)
        await self._repo.set_attributes(project_id, store_id, file_id, body.attributes)
        await VectorIndex(self._db, project_id).update_attributes(
            store_id, file_id, body.attributes
        )
        return await self.retrieve_file(project_id, store_id, file_id)

    async def delete_file(self, project_id: str, store_id: str, file_id: str) -> Result:
        await self._store(project_id, store_id)
        if not await self._repo.delete_file(project_id, store_id, file_id):
            raise _file_not_in_store(file_id, store_id)
        await VectorIndex(self._db, project_id).delete_file(store_id, file_id)
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    async def file_content(self, project_id: str, store_id: str, file_id: str) -> Result:
        await self._file(project_id, store_id, file_id)
        texts = await VectorIndex(self._db, project_id).file_chunks(store_id, file_id)
        return {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": t} for t in texts],
            "has_more": False,
            "next_page": None,
        }

    async def file_deleted(self, project_id: str, file_id: str) -> None:
        """A File was deleted: detach it from every store and drop its chunks."""
        index = VectorIndex(self._db, project_id)
        for store_id in await self._repo.detach_everywhere(project_id, file_id):
            await index.delete_file(store_id, file_id)

    # -- file batches --------------------------------------------------------------

    async def create_batch(
        self, project_id: str, store_id: str, body: CreateBatchRequest
    ) -> Result:
        await self._store(project_id, store_id)
        if (body.file_ids is None) == (body.files is None):
            raise invalid_request(
                "Exactly one of 'file_ids' or 'files' must be provided.",
                param="file_ids",
                code="invalid_value",
            )
        news: list[NewFile] = []
        if body.file_ids is not None:
            strategy = _strategy(body.chunking_strategy, "").to_param()
            for index, file_id in enumerate(dict.fromkeys(body.file_ids)):
                await self._require_file(project_id, file_id, f"file_ids[{index}]")
                news.append(NewFile(file_id, body.attributes, strategy))
        else:
            # Per-file settings; the batch's own are ignored (as the SDK documents).
            for index, item in enumerate(body.files or ()):
                where = f"files[{index}]"
                strategy = _strategy(item.chunking_strategy, where).to_param()
                await self._require_file(project_id, item.file_id, f"{where}.file_id")
                news.append(NewFile(item.file_id, item.attributes, strategy))
        now = int(time.time())
        batch_id = new_id("vsfb")
        await self._repo.add_files(project_id, store_id, news, now, batch=(batch_id, now))
        self._wake.set()
        return await self.retrieve_batch(project_id, store_id, batch_id)

    async def retrieve_batch(self, project_id: str, store_id: str, batch_id: str) -> Result:
        await self._store(project_id, store_id)
        return (await self._batch(project_id, store_id, batch_id)).wire()

    async def cancel_batch(self, project_id: str, store_id: str, batch_id: str) -> Result:
        await self._store(project_id, store_id)
        if not await self._repo.cancel_batch(project_id, store_id, batch_id):
            raise _batch_not_found(batch_id, store_id)
        return await self.retrieve_batch(project_id, store_id, batch_id)

    # -- search --------------------------------------------------------------------

    async def search_page(self, project_id: str, store_id: str, body: SearchRequest) -> Result:
        queries = [body.query] if isinstance(body.query, str) else list(body.query)
        if body.rewrite_query:
            # No rewriting model here: the query is only normalized (whitespace).
            queries = [" ".join(q.split()) or q for q in queries]
        ranking = None if body.ranking_options is None else body.ranking_options.model_dump()
        data = await self.search(
            project_id,
            [store_id],
            queries,
            max_num_results=body.max_num_results,
            filters=body.filters,
            ranking_options=ranking,
        )
        return {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": data,
            "has_more": False,
            "next_page": None,
        }

    async def search(
        self,
        project_id: str,
        vector_store_ids: list[str],
        query: str | list[str],
        *,
        max_num_results: int = 10,
        filters: dict[str, Any] | None = None,
        ranking_options: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The best chunks of the stores for the query, best first, as the wire's search
        results ({file_id, filename, score, attributes, content}). Raises the hosted 404
        for an unknown store and 400s for bad arguments."""
        if not 1 <= max_num_results <= 50:
            raise invalid_request(
                f"Invalid 'max_num_results': expected an integer between 1 and 50, but got "
                f"{max_num_results}.",
                param="max_num_results",
                code="invalid_value",
            )
        options = ranking_options or {}
        ranker_name = options.get("ranker") or "auto"
        threshold = options.get("score_threshold")
        threshold = 0.0 if threshold is None else float(threshold)
        ranker = _RANKERS.get(ranker_name)
        if ranker is None:
            raise invalid_request(
                f"Invalid value: '{ranker_name}'. Supported values are: 'none', 'auto' and "
                "'default-2024-11-15'.",
                param="ranking_options.ranker",
                code="invalid_value",
            )
        if not 0.0 <= threshold <= 1.0:
            raise invalid_request(
                "Invalid 'ranking_options.score_threshold': expected a number between 0 and 1.",
                param="ranking_options.score_threshold",
                code="invalid_value",
            )
        store_ids = list(dict.fromkeys(vector_store_ids))
        for store_id in store_ids:
            await self._store(project_id, store_id)
        queries = [query] if isinstance(query, str) else [q for q in query if q.strip()]
        if not queries or not any(q.strip() for q in queries):
            raise invalid_request("Invalid 'query': expected a non-empty string.", param="query")
        vectors = await self._embedder.embed(queries)
        try:
            results = await VectorIndex(self._db, project_id).search(
                store_ids,
                vectors,
                " ".join(queries),
                k=max_num_results,
                filters=filters,
                score_threshold=threshold,
                ranker=ranker,
            )
        except FilterError as exc:
            raise invalid_request(str(exc), param="filters", code="invalid_value") from None
        now = int(time.time())
        for store_id in store_ids:  # searching keeps a store active (expiry anchor)
            await self._repo.update_store(project_id, store_id, {"last_active_at": now})
        return [
            {
                "file_id": r.file_id,
                "filename": r.filename,
                "score": r.score,
                "attributes": r.attributes,
                "content": r.content,
            }
            for r in results
        ]

    # -- ingestion -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before reading: a wake-up during the read is kept
            try:
                job = await self._repo.next_pending()
                if job is None:
                    await self._wake.wait()
                    continue
                await self._ingest(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("vector store ingestion loop failed")
                await asyncio.sleep(_RETRY_PAUSE_S)

    async def _ingest(self, job: PendingFile) -> None:
        try:
            usage = await self._index_file(job)
        except _Failed as failure:
            await self._repo.finish(job, "failed", failure.error, 0)
            return
        except Exception as exc:  # not CancelledError: at shutdown the row stays in_progress
            log.exception("vector store file ingestion failed", file_id=job.file_id)
            error = {"code": "server_error", "message": f"Processing failed: {exc}"}
            await self._repo.finish(job, "failed", error, 0)
            return
        if usage is not None and not await self._repo.finish(job, "completed", None, usage):
            # Detached, cancelled or attached again meanwhile: drop what this job added.
            await VectorIndex(self._db, job.project_id).delete_file(
                job.vector_store_id, job.file_id
            )

    async def _index_file(self, job: PendingFile) -> int | None:
        """Index the file's chunks; their size in bytes, or None if the file is no longer
        in progress (nothing indexed). Raises _Failed with the wire `last_error`."""
        try:
            filename, data = await self._files.open_for_model(job.project_id, job.file_id)
        except APIError:
            raise _Failed("invalid_file", f"The file {job.file_id} no longer exists.") from None
        strategy = ChunkingStrategy.from_param(job.chunking_strategy)
        try:
            chunks = await asyncio.to_thread(_chunks, filename, data, strategy)
        except UnreadableFile as exc:
            message = str(exc)
            code = "unsupported_file" if message.startswith("Unsupported") else "invalid_file"
            raise _Failed(code, message) from None
        if not chunks:
            raise _Failed("invalid_file", "The file contains no text.")
        if await self._current(job) is None:
            return None  # skip the embedding work for a file no longer wanted
        try:
            vectors = await self._embedder.embed([c.text for c in chunks])
        except EmbeddingError as exc:
            raise _Failed("server_error", f"Embedding failed: {exc}") from None
        # Attributes are read now, not when the job started, so an update made during
        # the embedding is not overwritten.
        row = await self._current(job)
        if row is None:
            return None
        await VectorIndex(self._db, job.project_id).add_chunks(
            job.vector_store_id, job.file_id, chunks, vectors, row.attributes, filename
        )
        return sum(len(c.text.encode()) for c in chunks)

    async def _current(self, job: PendingFile) -> VSFileRow | None:
        row = await self._repo.get_file(job.project_id, job.vector_store_id, job.file_id)
        if row is None or row.status != "in_progress" or row.generation != job.generation:
            return None
        return row

    # -- lookups -------------------------------------------------------------------

    async def _store(self, project_id: str, store_id: str) -> StoreRow:
        row = await self._repo.get_store(project_id, store_id)
        if row is None:
            raise store_not_found(store_id)
        return row

    async def _file(self, project_id: str, store_id: str, file_id: str) -> VSFileRow:
        await self._store(project_id, store_id)
        row = await self._repo.get_file(project_id, store_id, file_id)
        if row is None:
            raise _file_not_in_store(file_id, store_id)
        return row

    async def _batch(self, project_id: str, store_id: str, batch_id: str) -> BatchRow:
        row = await self._repo.get_batch(project_id, store_id, batch_id)
        if row is None:
            raise _batch_not_found(batch_id, store_id)
        return row

    async def _require_file(self, project_id: str, file_id: str, param: str) -> None:
        try:
            await self._files.retrieve(project_id, file_id)
        except APIError:
            raise not_found(f"No such File object: {file_id}", param=param) from None


class _Failed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message}


def _batch_not_found(batch_id: str, store_id: str) -> APIError:
    return not_found(f"No file batch found with id '{batch_id}' in vector store '{store_id}'.")
