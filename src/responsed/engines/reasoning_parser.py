"""Split reasoning written inline as `<think>…</think>` from the answer.

DeepSeek-R1 distills, Qwen3 and their kin write their chain of thought into the
generated text. `ThinkTagSplitter` turns that text into `ReasoningDelta`s and
`TextDelta`s as it streams; `ThinkTagEngine` wraps any engine with one, so the choice
is per model (`reasoning_parser = "think_tags"`) and independent of the backend.

Only the first `<think>…</think>` block is reasoning: after `</think>` the rest of the
text is the answer, verbatim, so an answer that mentions the tags is left alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from contextlib import aclosing

from responsed.engines.base import (
    Capabilities,
    Delta,
    Engine,
    EngineRequest,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

__all__ = ["ThinkTagEngine", "ThinkTagSplitter"]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def _partial_tag(text: str, tag: str) -> int:
    """The length of the longest end of `text` that could begin `tag` (0: none)."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkTagSplitter:
    """Streaming `<think>` splitter: `feed` each chunk, then `flush` once at the end.

    A tag may be split across chunks at any character: the splitter holds back the end
    of a chunk only while it could still be the start of the tag it is looking for.
    Whitespace right after `</think>` is dropped from the answer. A `<think>` that never
    closes makes everything after it reasoning. `starts_in_reasoning` is for chat
    templates that already open `<think>` in the prompt, so the output begins inside the
    reasoning and only `</think>` appears.

    Logprobs: a chunk that comes out as one unchanged `TextDelta` keeps its logprobs;
    a chunk that is split (around a tag, held back, or trimmed) loses them, since the
    tokens cannot be assigned to the pieces reliably.
    """

    def __init__(self, *, starts_in_reasoning: bool = False) -> None:
        self._in_reasoning = starts_in_reasoning
        self._seen_close = False  # after `</think>`: plain answer, no more tags
        self._strip = False  # dropping whitespace right after `</think>`
        self._held = ""  # a possible partial tag from the previous chunk
        self._emitted = False  # any text or reasoning out yet

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...] | None = None) -> list[Delta]:
        out: list[Delta] = []
        whole = not self._held
        data = self._held + text
        self._held = ""
        while data:
            if self._seen_close:
                if self._strip:
                    data = data.lstrip()
                    self._strip = not data
                if data:
                    out.append(TextDelta(data))
                break
            tag = CLOSE_TAG if self._in_reasoning else OPEN_TAG
            at = data.find(tag)
            # Whitespace before a leading `<think>` is template residue, not an answer.
            leading = not self._emitted and not self._in_reasoning
            if at < 0:
                keep = _partial_tag(data, tag)
                if leading and not data[: len(data) - keep].strip():
                    self._held = data
                    break
                self._held = data[len(data) - keep :]
                self._emit(out, data[: len(data) - keep])
                break
            if not (leading and not data[:at].strip()):
                self._emit(out, data[:at])
            data = data[at + len(tag) :]
            if self._in_reasoning:
                self._in_reasoning = False
                self._seen_close = True
                self._strip = True
            else:
                self._in_reasoning = True
        if logprobs is not None and whole and not self._held and len(out) == 1:
            only = out[0]
            if isinstance(only, TextDelta) and only.text == text:
                out[0] = TextDelta(text, logprobs)
        return out

    def flush(self) -> list[Delta]:
        """What is still held back: a partial tag that never completed is plain text."""
        out: list[Delta] = []
        self._emit(out, self._held)
        self._held = ""
        return out

    def _emit(self, out: list[Delta], text: str) -> None:
        if text:
            self._emitted = True
            out.append(ReasoningDelta(text) if self._in_reasoning else TextDelta(text))


class ThinkTagEngine:
    """An engine whose text output goes through a `ThinkTagSplitter`.

    Everything else is delegated to `inner`. When the inner usage reports no
    reasoning tokens but reasoning text was produced, `reasoning_tokens` is an
    *estimate*: the output tokens shared in proportion to the characters of reasoning
    and of everything else (answer, refusal, tool-call arguments).
    """

    def __init__(self, inner: Engine, *, starts_in_reasoning: bool = False) -> None:
        self.inner = inner
        self.starts_in_reasoning = starts_in_reasoning

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.inner.capabilities, reasoning=True)

    @property
    def context_window(self) -> int | None:
        return self.inner.context_window

    async def start(self) -> None:
        await self.inner.start()

    async def count_tokens(self, request: EngineRequest) -> int | None:
        return await self.inner.count_tokens(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def stream(self, request: EngineRequest) -> AsyncGenerator[Delta, None]:
        splitter = ThinkTagSplitter(starts_in_reasoning=self.starts_in_reasoning)
        counts = [0, 0]  # characters of reasoning, of everything else
        async with aclosing(self.inner.stream(request)) as deltas:
            async for delta in deltas:
                if isinstance(delta, TextDelta):
                    out = splitter.feed(delta.text, delta.logprobs)
                elif isinstance(delta, Finish):
                    out = splitter.flush()
                else:
                    out = [delta]
                for piece in out:
                    _count(piece, counts)
                    yield piece
                if isinstance(delta, Finish):
                    yield _with_reasoning_estimate(delta, counts)
        for piece in splitter.flush():  # an inner stream that ended without Finish
            yield piece


def _count(delta: Delta, counts: list[int]) -> None:
    if isinstance(delta, ReasoningDelta):
        counts[0] += len(delta.text)
    elif isinstance(delta, TextDelta | RefusalDelta):
        counts[1] += len(delta.text)
    elif isinstance(delta, ToolCallDelta):
        counts[1] += len(delta.arguments)


def _with_reasoning_estimate(finish: Finish, counts: list[int]) -> Finish:
    usage = finish.usage
    reasoning, other = counts
    if usage is None or usage.reasoning_tokens or not reasoning:
        return finish
    estimate = round(usage.output_tokens * reasoning / (reasoning + other))
    new_usage: Usage = dataclasses.replace(usage, reasoning_tokens=estimate)
    return dataclasses.replace(finish, usage=new_usage)
