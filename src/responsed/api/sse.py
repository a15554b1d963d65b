"""Server-sent events framing: `event:` + `data:` lines, one serialization per event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

__all__ = ["encode_event", "sse_stream"]


def encode_event(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def sse_stream(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for event in events:
        yield encode_event(event)
