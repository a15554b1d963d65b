"""The Vector Stores API through the official SDK: stores, files, batches, search,
background ingestion; and the service's `search` for `file_search`, with recovery."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from responsed.protocol.errors import APIError
from responsed.runtime.files import FileService
from responsed.runtime.vector_stores import VectorStoreService
from responsed.store.blobs import BlobStore
from responsed.store.files import SQLiteFileStore
from responsed.store.sqlite import SQLiteResponseStore
from responsed.store.vector_stores import NewFile, SQLiteVectorStoreRepository, StoreRow
from test_file_inputs import make_pdf

TIDES = (
    "The lighthouse keeper recorded tide heights every morning. Spring tides reach four "
    "metres at the harbour wall."
)
REEF = (
    "Coral reefs near the island shelter parrotfish and turtles. Divers survey the reef "
    "every autumn."
)
AUTO_AS_STATIC = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
}


def _upload(client: OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, data), purpose="assistants").id


def _status(exc: openai.APIStatusError) -> tuple[int, Any]:
    body = exc.body if isinstance(exc.body, dict) else {}
    return exc.status_code, body.get("param")


def _loose(value: Any) -> Any:
    """A deliberately invalid parameter, past the SDK's types."""
    return value


def _search(client: OpenAI, store_id: str, **params: Any) -> dict[str, Any]:
    raw = client.vector_stores.with_raw_response.search(vector_store_id=store_id, **params)
    body: dict[str, Any] = raw.http_response.json()
    return body


# -- vector stores -------------------------------------------------------------------


def test_store_lifecycle_and_listing(client: OpenAI) -> None:
    store = client.vector_stores.create(
        name="notes",
        description="for the tests",
        metadata={"team": "docs"},
        expires_after={"anchor": "last_active_at", "days": 3},
    )
    assert store.id.startswith("vs_")
    assert store.object == "vector_store"
    assert store.name == "notes" and store.metadata == {"team": "docs"}
    assert store.status == "completed" and store.usage_bytes == 0
    assert store.file_counts.total == 0 and store.file_counts.in_progress == 0
    assert store.expires_after is not None and store.expires_after.days == 3
    assert store.last_active_at is not None
    assert store.expires_at == store.last_active_at + 3 * 86_400

    updated = client.vector_stores.update(store.id, name="renamed", expires_after=None)
    assert updated.name == "renamed" and updated.metadata == {"team": "docs"}
    assert updated.expires_after is None and updated.expires_at is None
    assert client.vector_stores.retrieve(store.id).name == "renamed"

    others = [client.vector_stores.create(name=f"s{i}") for i in range(3)]
    page = client.vector_stores.list(limit=2)
    assert [s.id for s in page.data] == [others[2].id, others[1].id]  # newest first
    assert page.has_more
    after = client.vector_stores.list(limit=2, after=others[1].id)
    assert [s.id for s in after.data] == [others[0].id, store.id]
    before = client.vector_stores.list(limit=2, before=others[0].id)
    assert [s.id for s in before.data] == [others[2].id, others[1].id]
    asc = client.vector_stores.list(limit=100, order="asc")
    ids = [s.id for s in asc.data]
    assert ids.index(store.id) < ids.index(others[0].id) < ids.index(others[2].id)

    deleted = client.vector_stores.delete(store.id)
    assert deleted.deleted and deleted.id == store.id and deleted.object == "vector_store.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.vector_stores.retrieve(store.id)
    assert "No vector store found" in str(err.value)
    for other in others:
        client.vector_stores.delete(other.id)


def test_store_created_with_files(client: OpenAI) -> None:
    file_id = _upload(client, "tides.txt", TIDES.encode())
    store = client.vector_stores.create(name="with files", file_ids=[file_id])
    assert store.file_counts.total == 1
    assert store.status in ("in_progress", "completed")
    done = client.vector_stores.files.poll(file_id, vector_store_id=store.id)
    assert done.status == "completed"
    store = client.vector_stores.retrieve(store.id)
    assert store.status == "completed"
    assert store.file_counts.completed == 1 and store.file_counts.in_progress == 0
    assert store.usage_bytes == done.usage_bytes == len(TIDES.encode())
    client.vector_stores.delete(store.id)


# -- files and search ----------------------------------------------------------------


def test_upload_and_poll_then_search(client: OpenAI) -> None:
    store = client.vector_stores.create(name="search")
    tides = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id,
        file=("tides.txt", TIDES.encode()),
        attributes={"topic": "tides", "year": 2024},
    )
    reef = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id,
        file=("reef.md", REEF.encode()),
        attributes={"topic": "reef", "year": 2021},
    )
    for vs_file in (tides, reef):
        assert vs_file.object == "vector_store.file"
        assert vs_file.status == "completed" and vs_file.last_error is None
        assert vs_file.vector_store_id == store.id and vs_file.usage_bytes > 0
        assert vs_file.chunking_strategy is not None
        assert vs_file.chunking_strategy.model_dump() == AUTO_AS_STATIC  # auto, as hosted
    assert tides.attributes == {"topic": "tides", "year": 2024}

    body = _search(client, store.id, query="How high do spring tides reach?")
    assert body["object"] == "vector_store.search_results.page"
    assert body["search_query"] == ["How high do spring tides reach?"]
    assert body["has_more"] is False and body["next_page"] is None
    first = body["data"][0]
    assert first["file_id"] == tides.id and first["filename"] == "tides.txt"
    assert first["content"] == [{"type": "text", "text": TIDES}]
    assert first["attributes"] == {"topic": "tides", "year": 2024}
    assert 0 < first["score"] <= 1
    scores = [r["score"] for r in body["data"]]
    assert scores == sorted(scores, reverse=True)

    # The SDK's page, filters, and the score threshold.
    page = client.vector_stores.search(
        vector_store_id=store.id,
        query="spring tides",
        filters={"type": "eq", "key": "topic", "value": "reef"},
    )
    assert [r.file_id for r in page.data] == [reef.id]
    page = client.vector_stores.search(
        vector_store_id=store.id,
        query=["parrotfish", "turtles"],
        filters={"type": "gte", "key": "year", "value": 2022},
    )
    assert [r.file_id for r in page.data] == [tides.id]
    everything = _search(client, store.id, query="spring tides harbour")
    assert len(everything["data"]) == 2
    strict = _search(
        client,
        store.id,
        query="spring tides harbour",
        ranking_options={"ranker": "none", "score_threshold": 0.99},
    )
    assert [r["file_id"] for r in strict["data"]] == [tides.id]
    assert all(r["score"] >= 0.99 for r in strict["data"])
    one = _search(client, store.id, query="reef", max_num_results=1)
    assert len(one["data"]) == 1

    # rewrite_query: no rewriting model, the query is only normalized.
    rewritten = _search(client, store.id, query="  coral   reefs ", rewrite_query=True)
    assert rewritten["search_query"] == ["coral reefs"]
    assert rewritten["data"][0]["file_id"] == reef.id

    # Attribute updates reach the index.
    client.vector_stores.files.update(reef.id, vector_store_id=store.id, attributes={"topic": "x"})
    assert client.vector_stores.files.retrieve(reef.id, vector_store_id=store.id).attributes == {
        "topic": "x"
    }
    page = client.vector_stores.search(
        vector_store_id=store.id, query="reef", filters={"type": "eq", "key": "topic", "value": "x"}
    )
    assert [r.file_id for r in page.data] == [reef.id]
    assert page.data[0].attributes == {"topic": "x"}

    listed = client.vector_stores.files.list(vector_store_id=store.id)
    assert [f.id for f in listed.data] == [reef.id, tides.id]
    completed = client.vector_stores.files.list(vector_store_id=store.id, filter="completed")
    assert len(completed.data) == 2
    assert client.vector_stores.files.list(vector_store_id=store.id, filter="failed").data == []
    store_after = client.vector_stores.retrieve(store.id)
    assert store_after.usage_bytes == tides.usage_bytes + reef.usage_bytes
    assert store_after.last_active_at is not None
    client.vector_stores.delete(store.id)


def test_static_chunking_shows_on_file_and_content(client: OpenAI) -> None:
    text = " ".join(
        f"Entry {i}: the keeper noted wind from the west and a falling barometer."
        for i in range(40)
    )
    store = client.vector_stores.create(name="chunks")
    file_id = _upload(client, "log.txt", text.encode())
    static: Any = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
    }
    vs_file = client.vector_stores.files.create_and_poll(
        file_id, vector_store_id=store.id, chunking_strategy=static
    )
    assert vs_file.status == "completed"
    assert vs_file.chunking_strategy is not None
    assert vs_file.chunking_strategy.model_dump() == static
    content = client.vector_stores.files.content(file_id, vector_store_id=store.id)
    chunks = [c.text or "" for c in content.data]
    assert len(chunks) > 5
    assert all(c.type == "text" for c in content.data)
    assert chunks[0].startswith("Entry 0:") and chunks[-1].endswith("barometer.")
    assert vs_file.usage_bytes == sum(len(c.encode()) for c in chunks)
    client.vector_stores.delete(store.id)


def test_deleting_removes_chunks_from_search(client: OpenAI) -> None:
    store = client.vector_stores.create(name="deletes")
    tides = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("tides.txt", TIDES.encode())
    )
    reef = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("reef.txt", REEF.encode())
    )

    def found() -> set[str]:
        return {r["file_id"] for r in _search(client, store.id, query="tides reef")["data"]}

    assert found() == {tides.id, reef.id}
    gone = client.vector_stores.files.delete(tides.id, vector_store_id=store.id)
    assert gone.deleted and gone.object == "vector_store.file.deleted"
    assert found() == {reef.id}
    assert client.files.retrieve(tides.id).id == tides.id  # the File itself stays
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(tides.id, vector_store_id=store.id)

    # Deleting the File removes it from every vector store.
    client.files.delete(reef.id)
    assert found() == set()
    assert client.vector_stores.files.list(vector_store_id=store.id).data == []
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0
    client.vector_stores.delete(store.id)


async def test_async_create_and_poll(aclient: AsyncOpenAI) -> None:
    store = await aclient.vector_stores.create(name="async")
    uploaded = await aclient.files.create(file=("a.txt", TIDES.encode()), purpose="assistants")
    vs_file = await aclient.vector_stores.files.create_and_poll(
        uploaded.id, vector_store_id=store.id
    )
    assert vs_file.status == "completed"
    page = await aclient.vector_stores.search(vector_store_id=store.id, query="tide")
    assert page.data[0].file_id == uploaded.id
    await aclient.vector_stores.delete(store.id)


# -- batches -------------------------------------------------------------------------


def test_batch_with_a_corrupt_pdf(client: OpenAI) -> None:
    store = client.vector_stores.create(name="batch")
    good_pdf = _upload(client, "harbour.pdf", make_pdf(["Harbour dues are paid in April."]))
    bad_pdf = _upload(client, "broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n")
    binary = _upload(client, "photo.png", b"\x89PNG\r\n\x1a\n" + bytes(64))
    text = _upload(client, "reef.txt", REEF.encode())
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id,
        files=[
            {"file_id": good_pdf, "attributes": {"kind": "pdf"}},
            {"file_id": bad_pdf},
            {"file_id": binary},
            {
                "file_id": text,
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 0},
                },
            },
        ],
    )
    assert batch.object == "vector_store.files_batch" and batch.id.startswith("vsfb_")
    assert batch.vector_store_id == store.id
    assert batch.status == "completed"
    counts = batch.file_counts
    assert (counts.completed, counts.failed, counts.in_progress, counts.total) == (2, 2, 0, 4)

    broken = client.vector_stores.files.retrieve(bad_pdf, vector_store_id=store.id)
    assert broken.status == "failed" and broken.last_error is not None
    assert broken.last_error.code == "invalid_file"
    assert "PDF" in broken.last_error.message
    png = client.vector_stores.files.retrieve(binary, vector_store_id=store.id)
    assert png.last_error is not None and png.last_error.code == "unsupported_file"
    reef = client.vector_stores.files.retrieve(text, vector_store_id=store.id)
    assert reef.chunking_strategy is not None
    assert reef.chunking_strategy.model_dump()["static"]["max_chunk_size_tokens"] == 200

    failed = client.vector_stores.file_batches.list_files(
        batch.id, vector_store_id=store.id, filter="failed"
    )
    assert {f.id for f in failed.data} == {bad_pdf, binary}
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert len(listed.data) == 4

    hit = _search(client, store.id, query="When are harbour dues paid?")["data"][0]
    assert hit["file_id"] == good_pdf and hit["attributes"] == {"kind": "pdf"}
    assert "Harbour dues are paid in April." in hit["content"][0]["text"]

    # file_ids with the batch's own attributes and chunking strategy.
    again = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[text], attributes={"source": "batch"}
    )
    assert again.file_counts.completed == 1
    assert client.vector_stores.files.retrieve(text, vector_store_id=store.id).attributes == {
        "source": "batch"
    }
    client.vector_stores.delete(store.id)


def test_batch_cancel(client: OpenAI) -> None:
    # Keep the single ingestion worker busy with a long file first, so the batch's
    # files are still queued when it is cancelled.
    busy_store = client.vector_stores.create(name="busy")
    long_text = " ".join(
        f"Line {i}: the tide table for the northern harbour lists high water at dawn."
        for i in range(300)
    )
    busy = _upload(client, "long.txt", long_text.encode())
    client.vector_stores.files.create(vector_store_id=busy_store.id, file_id=busy)

    store = client.vector_stores.create(name="cancel")
    file_ids = [_upload(client, f"n{i}.txt", f"Note {i} about reefs.".encode()) for i in range(3)]
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=file_ids)
    assert batch.status == "in_progress" and batch.file_counts.in_progress == 3
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.cancelled == 3 and cancelled.file_counts.in_progress == 0
    files = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert {f.status for f in files.data} == {"cancelled"}

    done = client.vector_stores.files.poll(busy, vector_store_id=busy_store.id)
    assert done.status == "completed"
    assert (
        client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id).status
        == "cancelled"
    )
    assert _search(client, store.id, query="reefs")["data"] == []  # nothing was indexed
    client.vector_stores.delete(store.id)
    client.vector_stores.delete(busy_store.id)


# -- errors --------------------------------------------------------------------------


def test_not_found_and_bad_requests(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve("vs_missing")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search(vector_store_id="vs_missing", query="x")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.delete("vs_missing")
    store = client.vector_stores.create(name="errors")
    with pytest.raises(openai.NotFoundError) as err:
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file-missing")
    assert _status(err.value) == (404, "file_id")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve("file-missing", vector_store_id=store.id)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve("vsfb_missing", vector_store_id=store.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.vector_stores.create(file_ids=["file-missing"])
    assert _status(err.value) == (404, "file_ids[0]")

    file_id = _upload(client, "x.txt", b"hello")
    bad_chunking = [
        ({"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}, "max_chunk_size_tokens"),
        ({"max_chunk_size_tokens": 5000, "chunk_overlap_tokens": 0}, "max_chunk_size_tokens"),
        ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}, "chunk_overlap_tokens"),
    ]
    for static, field in bad_chunking:
        with pytest.raises(openai.BadRequestError) as bad:
            client.vector_stores.files.create(
                vector_store_id=store.id,
                file_id=file_id,
                chunking_strategy=_loose({"type": "static", "static": static}),
            )
        assert _status(bad.value) == (400, f"chunking_strategy.static.{field}")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.file_batches.create(
            vector_store_id=store.id,
            files=[
                {
                    "file_id": file_id,
                    "chunking_strategy": {
                        "type": "static",
                        "static": {"max_chunk_size_tokens": 10, "chunk_overlap_tokens": 0},
                    },
                }
            ],
        )
    assert _status(bad.value) == (400, "files[0].chunking_strategy.static.max_chunk_size_tokens")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.files.create(
            vector_store_id=store.id,
            file_id=file_id,
            chunking_strategy=_loose({"type": "fixed"}),
        )
    assert _status(bad.value) == (400, "chunking_strategy")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.file_batches.create(
            vector_store_id=store.id, file_ids=[file_id], files=[{"file_id": file_id}]
        )
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.search(vector_store_id=store.id, query="x", max_num_results=51)
    assert _status(bad.value) == (400, "max_num_results")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.search(
            vector_store_id=store.id, query="x", ranking_options={"score_threshold": 1.5}
        )
    assert _status(bad.value) == (400, "ranking_options.score_threshold")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.search(
            vector_store_id=store.id,
            query="x",
            ranking_options=_loose({"ranker": "best"}),
        )
    assert _status(bad.value) == (400, "ranking_options.ranker")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.search(
            vector_store_id=store.id,
            query="x",
            filters=_loose({"type": "near", "key": "a", "value": 1}),
        )
    assert _status(bad.value) == (400, "filters")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.create(expires_after=_loose({"anchor": "created_at", "days": 1}))
    assert _status(bad.value) == (400, "expires_after.anchor")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 0})
    assert _status(bad.value) == (400, "expires_after.days")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.create(extra_body={"colour": "red"})
    assert _status(bad.value) == (400, "colour")
    with pytest.raises(openai.BadRequestError) as bad:
        client.vector_stores.files.list(vector_store_id=store.id, limit=101)
    assert _status(bad.value) == (400, "limit")
    client.vector_stores.delete(store.id)


# -- the service: search for file_search, and recovery after a restart -------------


class HashEmbedder:
    """Deterministic bag-of-words vectors: no model, so the test is fast."""

    dimensions = 16

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = [0.0] * self.dimensions
            for word in text.lower().split():
                vector[hashlib.sha256(word.encode()).digest()[0] % self.dimensions] += 1.0
            norm = sum(x * x for x in vector) ** 0.5 or 1.0
            out.append([x / norm for x in vector])
        return out


async def _file(files: FileService, name: str, data: bytes) -> str:
    upload = files.new_upload()
    upload.write(data)
    created = await files.create(
        "proj", upload, filename=name, purpose="assistants", expires_after={}
    )
    return str(created["id"])


async def test_service_recovers_in_progress_files_and_searches(tmp_path: Path) -> None:
    db = SQLiteResponseStore(tmp_path / "db.sqlite3")
    await db.open()
    files = FileService(SQLiteFileStore(db), BlobStore(tmp_path / "files"), max_file_bytes=10**6)
    files.open()
    repo = SQLiteVectorStoreRepository(db)
    try:
        tides = await _file(files, "tides.txt", TIDES.encode())
        reef = await _file(files, "reef.txt", REEF.encode())
        now = int(time.time())
        # Rows left in_progress by a server that stopped before ingesting them.
        for store_id, file_id in (("vs_a", tides), ("vs_b", reef)):
            row = StoreRow(store_id, now, store_id, None, None, None, now)
            await repo.create_store("proj", row, [NewFile(file_id, {"n": 1}, AUTO_AS_STATIC)])
        service = VectorStoreService(db, repo, files, HashEmbedder())
        await service.start()
        try:
            for _ in range(200):
                states = [
                    (await service.retrieve_file("proj", s, f))["status"]
                    for s, f in (("vs_a", tides), ("vs_b", reef))
                ]
                if states == ["completed", "completed"]:
                    break
                await asyncio.sleep(0.02)
            assert states == ["completed", "completed"]

            results = await service.search(
                "proj", ["vs_a", "vs_b"], "coral reefs parrotfish", max_num_results=5
            )
            assert results[0]["file_id"] == reef
            assert set(results[0]) == {"file_id", "filename", "score", "attributes", "content"}
            assert results[0]["content"][0]["type"] == "text"
            filtered = await service.search(
                "proj",
                ["vs_a", "vs_b"],
                ["tides"],
                filters={"type": "eq", "key": "n", "value": 2},
            )
            assert filtered == []
            with pytest.raises(APIError) as err:
                await service.search("proj", ["vs_a", "vs_nope"], "tides")
            assert err.value.status == 404
            with pytest.raises(APIError) as err:
                await service.search("other-project", ["vs_a"], "tides")
            assert err.value.status == 404
        finally:
            await service.aclose()
    finally:
        await db.aclose()
