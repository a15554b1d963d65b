"""Server-sent events framing: `event:` + `data:` lines, one serialization per event.

Events produced back to back (all the deltas of one upstream read) are coalesced into
one write: a producer task appends encoded events while the consumer is waiting to be
scheduled, so a busy stream costs one socket write per read rather than per event.
A comment line keeps idle connections (a request waiting in the model's queue) alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

__all__ = ["KEEPALIVE", "encode_event", "sse_stream"]

KEEPALIVE = b": keepalive\n\n"
_MAX_BATCH = 32  # events per write at most, so a burst does not delay its first event


def encode_event(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def sse_stream(
    events: AsyncIterator[dict[str, Any]], *, keepalive: float = 15.0
) -> AsyncIterator[bytes]:
    pending: list[bytes] = []
    ready = asyncio.Event()
    finished = False

    async def produce() -> None:
        nonlocal finished
        first = True
        try:
            async for event in events:
                pending.append(encode_event(event))
                ready.set()
                if first or len(pending) >= _MAX_BATCH:
                    first = False
                    await asyncio.sleep(0)  # let the consumer write what we have
        finally:
            finished = True
            ready.set()

    producer = asyncio.create_task(produce())
    try:
        while True:
            if not pending:
                if finished:
                    break
                try:
                    await asyncio.wait_for(ready.wait(), keepalive)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                ready.clear()
                continue
            chunk = b"".join(pending)
            pending.clear()
            yield chunk
        await producer  # re-raise a producer failure
    finally:
        if not producer.done():
            # The client went away: stop generation (the runtime stores what it has).
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
