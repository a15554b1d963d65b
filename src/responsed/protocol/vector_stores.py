"""`/v1/vector_stores` request bodies, with the hosted API's types and limits.

Chunking numbers are checked by `vectors.chunking.ChunkingStrategy` (the runtime turns
its errors into 400s with the right `param`); everything else is checked here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from responsed.protocol.request import Metadata, check_metadata

__all__ = [
    "MAX_BATCH_FILES",
    "Attributes",
    "ChunkingParam",
    "CreateBatchRequest",
    "CreateFileRequest",
    "CreateVectorStoreRequest",
    "ExpiresAfter",
    "SearchRequest",
    "UpdateFileRequest",
    "UpdateVectorStoreRequest",
]

MAX_BATCH_FILES = 2000  # the SDK: "The maximum batch size is 2000 files"
MAX_STORE_FILE_IDS = 500  # the hosted limit on `file_ids` at store creation


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The hosted limits: 16 keys, keys up to 64 characters, strings up to 512."""
    if value is None:
        return value
    if len(value) > 16:
        raise ValueError("attributes may have at most 16 keys")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"attribute key {key[:16]!r}… is longer than 64 characters")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError(f"attribute value for {key!r} is longer than 512 characters")
    return value


Attributes = Annotated[dict[str, str | bool | int | float], AfterValidator(check_attributes)]
LimitedMetadata = Annotated[Metadata, AfterValidator(check_metadata)]


class AutoChunking(_Strict):
    type: Literal["auto"]


class StaticChunkingValues(_Strict):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class StaticChunking(_Strict):
    type: Literal["static"]
    static: StaticChunkingValues


ChunkingParam = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class ExpiresAfter(_Strict):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class CreateVectorStoreRequest(_Strict):
    """`POST /v1/vector_stores`."""

    file_ids: list[str] | None = Field(default=None, max_length=MAX_STORE_FILE_IDS)
    name: str | None = None
    description: str | None = Field(default=None, max_length=512)
    metadata: LimitedMetadata | None = None
    chunking_strategy: ChunkingParam | None = None
    expires_after: ExpiresAfter | None = None


class UpdateVectorStoreRequest(_Strict):
    """`POST /v1/vector_stores/{id}`: absent fields stay; a null `expires_after`
    removes the policy, a null `metadata` clears it."""

    name: str | None = None
    metadata: LimitedMetadata | None = None
    expires_after: ExpiresAfter | None = None


class CreateFileRequest(_Strict):
    """`POST /v1/vector_stores/{id}/files`."""

    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: ChunkingParam | None = None


class UpdateFileRequest(_Strict):
    """`POST /v1/vector_stores/{id}/files/{file_id}`: `attributes` is required."""

    attributes: Attributes | None


class BatchFile(_Strict):
    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: ChunkingParam | None = None


class CreateBatchRequest(_Strict):
    """`POST /v1/vector_stores/{id}/file_batches`: `file_ids` (with the batch's own
    `attributes` and `chunking_strategy`) or `files` (each with its own), not both
    (checked by the runtime, which words the 400)."""

    file_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_BATCH_FILES)
    files: list[BatchFile] | None = Field(default=None, min_length=1, max_length=MAX_BATCH_FILES)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingParam | None = None


class RankingOptions(_Strict):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(default=None, ge=0, le=1)


Query = Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)]


class SearchRequest(_Strict):
    """`POST /v1/vector_stores/{id}/search`."""

    query: Query
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(default=10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
