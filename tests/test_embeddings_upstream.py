"""Vector stores embedding through a configured `/v1/embeddings` upstream (`[embeddings]`)
instead of the built-in model."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningServer, free_port, start_server
from responsed.config import load_settings
from wire import sdk_client

DIMENSIONS = 64


def bag_of_words(text: str) -> list[float]:
    """A deterministic embedding: hashed word counts, normalized."""
    vector = [0.0] * DIMENSIONS
    for raw in text.lower().split():
        word = raw.strip(".,?!")
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class EmbeddingsUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                upstream.requests.append({"auth": self.headers.get("authorization"), **body})
                data = [
                    {"object": "embedding", "index": i, "embedding": bag_of_words(text)}
                    for i, text in enumerate(body["input"])
                ]
                payload = json.dumps({"object": "list", "data": data, "model": body["model"]})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def embedding_server(tmp_path: Path) -> Iterator[tuple[RunningServer, EmbeddingsUpstream]]:
    upstream = EmbeddingsUpstream()
    config = tmp_path / "responsed.toml"
    config.write_text(
        f"""
builtin_model = false

[embeddings]
base_url = "{upstream.base_url}"
model = "hash-64"
api_key = "sk-embed"
"""
    )
    settings = load_settings(config, host="127.0.0.1", port=free_port(), data_dir=tmp_path / "d")
    running = start_server(settings)
    try:
        yield running, upstream
    finally:
        running.stop()
        upstream.close()


def test_vector_store_uses_the_embeddings_upstream(
    embedding_server: tuple[RunningServer, EmbeddingsUpstream],
) -> None:
    server, upstream = embedding_server
    with sdk_client(server.base_url) as client:
        texts = {
            "food.txt": b"The national dish is a stew of lentils and onions.",
            "rivers.txt": b"The river Fred flows north through the capital city.",
        }
        ids = [
            client.files.create(file=(name, data, "text/plain"), purpose="assistants").id
            for name, data in texts.items()
        ]
        store = client.vector_stores.create(name="kb", file_ids=ids)
        deadline = time.monotonic() + 30
        while client.vector_stores.retrieve(store.id).file_counts.completed < 2:
            assert time.monotonic() < deadline, client.vector_stores.files.list(store.id)
            time.sleep(0.05)
        page = client.vector_stores.search(store.id, query="lentils stew", max_num_results=2)
        assert page.data[0].filename == "food.txt"
        assert page.data[0].score >= page.data[-1].score
    assert upstream.requests, "the embeddings upstream was never called"
    assert {r["model"] for r in upstream.requests} == {"hash-64"}
    assert {r["auth"] for r in upstream.requests} == {"Bearer sk-embed"}
    embedded = [text for r in upstream.requests for text in r["input"]]
    assert "lentils stew" in embedded  # the query too
