"""The SSE encoder: framing, coalescing, keepalive comments, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from responsed.api.sse import KEEPALIVE, encode_event, sse_stream
from wire import parse_sse


def test_encode_event_framing() -> None:
    raw = encode_event({"type": "response.output_text.delta", "delta": "a\nb"})
    assert raw == (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","delta":"a\\nb"}\n\n'
    )


async def burst_then_pause(events: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for n, event in enumerate(events):
        yield event
        if n % 5 == 4:
            await asyncio.sleep(0.01)  # a new upstream read


async def test_coalesces_without_losing_or_reordering() -> None:
    events = [{"type": "response.output_text.delta", "sequence_number": n} for n in range(23)]
    chunks = [c async for c in sse_stream(burst_then_pause(events))]
    assert len(chunks) < len(events)  # back-to-back events share one write
    parsed = parse_sse(b"".join(chunks).decode())
    assert [e["sequence_number"] for e in parsed] == list(range(23))


async def test_keepalive_comment_while_idle() -> None:
    async def slow() -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(0.25)
        yield {"type": "response.completed"}

    chunks = [c async for c in sse_stream(slow(), keepalive=0.05)]
    assert chunks[0] == KEEPALIVE
    assert chunks[-1].startswith(b"event: response.completed")
    assert parse_sse(b"".join(chunks).decode()) == [{"type": "response.completed"}]


async def test_producer_error_propagates() -> None:
    async def broken() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "response.created"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        async for _ in sse_stream(broken()):
            pass


async def test_closing_the_stream_cancels_the_producer() -> None:
    stopped = asyncio.Event()

    async def endless() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                yield {"type": "response.output_text.delta"}
                await asyncio.sleep(0.001)
        finally:
            stopped.set()

    stream = sse_stream(endless())
    assert (await anext(stream)).startswith(b"event:")
    await stream.aclose()  # what Starlette does when the client disconnects
    await asyncio.wait_for(stopped.wait(), 5)
