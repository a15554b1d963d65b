"""The Files API through the official SDK, on a server of its own (a small upload limit,
a data dir no other test writes to)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from conftest import RunningServer, free_port, start_server
from responsed.config import load_settings
from wire import sdk_client

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def files_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("files")
    settings = load_settings(
        None,
        host="127.0.0.1",
        port=free_port(),
        data_dir=root / "data",
        builtin_model=False,
        max_file_bytes=LIMIT,
    )
    running = start_server(settings)
    yield running
    running.stop()


@pytest.fixture
def fclient(files_server: RunningServer) -> Iterator[OpenAI]:
    with sdk_client(files_server.base_url) as sdk:
        yield sdk


def _blob(server: RunningServer, content: bytes) -> Path:
    digest = hashlib.sha256(content).hexdigest()
    return server.settings.data_dir / "files" / digest[:2] / digest


def test_upload_retrieve_content_delete(fclient: OpenAI) -> None:
    created = fclient.files.create(file=("notes.txt", b"hello files"), purpose="user_data")
    assert created.id.startswith("file-")
    assert created.object == "file"
    assert (created.bytes, created.filename, created.purpose) == (11, "notes.txt", "user_data")
    assert created.status == "processed"
    assert created.expires_at is None
    assert created.status_details is None

    assert fclient.files.retrieve(created.id) == created
    assert fclient.files.content(created.id).content == b"hello files"

    deleted = fclient.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError) as caught:
        fclient.files.retrieve(created.id)
    assert caught.value.message.endswith(f" - No such File object: {created.id}")
    with pytest.raises(openai.NotFoundError):
        fclient.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        fclient.files.delete(created.id)


@pytest.mark.parametrize("purpose", ["assistants", "vision", "fine-tune", "evals", "user_data"])
def test_purposes(fclient: OpenAI, purpose: str) -> None:
    created = fclient.files.create(file=("a.jsonl", b"{}\n"), purpose=purpose)  # type: ignore[arg-type]
    assert created.purpose == purpose
    assert created.expires_at is None


def test_bad_purpose_and_list_params(fclient: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        fclient.files.create(file=("a.txt", b"x"), purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.param == "purpose"
    for limit in (0, 10_001):
        with pytest.raises(openai.BadRequestError) as caught:
            fclient.files.list(limit=limit)
        assert caught.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as caught:
        fclient.files.list(order="sideways")  # type: ignore[arg-type]
    assert caught.value.param == "order"


def test_expires_after(fclient: OpenAI) -> None:
    created = fclient.files.create(
        file=("t.txt", b"soon gone"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
    batch = fclient.files.create(file=("b.jsonl", b"{}"), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 24 * 3600  # the hosted default
    for seconds in (60, 2_592_001):
        with pytest.raises(openai.BadRequestError) as caught:
            fclient.files.create(
                file=("t.txt", b"x"),
                purpose="user_data",
                expires_after={"anchor": "created_at", "seconds": seconds},
            )
        assert caught.value.param == "expires_after.seconds"


def test_expired_file_is_gone(fclient: OpenAI, files_server: RunningServer) -> None:
    created = fclient.files.create(
        file=("old.txt", b"expired content"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    db = sqlite3.connect(files_server.settings.data_dir / "responsed.sqlite3")
    with db:
        db.execute("UPDATE files SET expires_at = 1 WHERE id = ?", (created.id,))
    db.close()
    with pytest.raises(openai.NotFoundError):
        fclient.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        fclient.files.content(created.id)
    assert created.id not in {f.id for f in fclient.files.list(purpose="user_data")}


def test_list_paging(fclient: OpenAI) -> None:
    ids = [
        fclient.files.create(file=(f"p{n}.jsonl", b"{}"), purpose="fine-tune").id for n in range(3)
    ]
    listed = [f.id for f in fclient.files.list(purpose="fine-tune") if f.id in ids]
    assert listed == ids[::-1]  # newest first by default

    first = fclient.files.list(purpose="fine-tune", order="asc", limit=2, after=ids[0])
    assert [f.id for f in first.data] == ids[1:]
    page = fclient.files.list(purpose="fine-tune", order="desc", limit=1)
    assert page.has_more
    walked = [f.id for f in page]  # the SDK follows `after` cursors page by page
    assert walked[:3] == ids[::-1]
    assert all(f.purpose == "fine-tune" for f in fclient.files.list(purpose="fine-tune"))


def test_same_content_stored_once(fclient: OpenAI, files_server: RunningServer) -> None:
    content = b"deduplicated bytes " * 10
    a = fclient.files.create(file=("a.txt", content), purpose="user_data")
    b = fclient.files.create(file=("../../b.txt", content), purpose="assistants")
    assert a.id != b.id
    assert b.filename == "../../b.txt"  # reported as given, never used as a path
    blob = _blob(files_server, content)
    assert blob.read_bytes() == content
    assert len([p for p in blob.parent.iterdir() if p.name == blob.name]) == 1
    fclient.files.delete(a.id)
    assert blob.exists()  # still referenced by b
    assert fclient.files.content(b.id).content == content
    fclient.files.delete(b.id)
    assert not blob.exists()


def test_upload_over_the_limit(fclient: OpenAI, files_server: RunningServer) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        fclient.files.create(file=("big.bin", b"x" * (LIMIT + 1)), purpose="user_data")
    assert caught.value.status_code == 413
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert str(LIMIT) in caught.value.message
    assert not list((files_server.settings.data_dir / "files" / "tmp").iterdir())
    assert not _blob(files_server, b"x" * (LIMIT + 1)).exists()
    exact = fclient.files.create(file=("ok.bin", b"y" * LIMIT), purpose="user_data")
    assert exact.bytes == LIMIT


def test_missing_file_field(files_server: RunningServer) -> None:
    import httpx

    reply = httpx.post(f"{files_server.base_url}/files", data={"purpose": "user_data"}, files={})
    assert reply.status_code == 400
