"""`responsed serve` with experimental in-memory patches, to measure suggested fixes.

Used by `bench/overhead.py --patch NAME[,NAME]`; nothing in `src/` changes. Patches:

- `async-deps`: `api/deps.service_of` / `project_of` as `async def`, so FastAPI calls
  them inline instead of hopping to its thread pool twice per request.
- `raw-upstream`: the upstream call without httpx (see `_raw_upstream`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the annotations here


def _async_deps() -> None:
    from responsed.api import deps

    sync_service, sync_project = deps.service_of, deps.project_of

    async def service_of(request: Request) -> Any:
        return sync_service(request)

    async def project_of(request: Request) -> str:
        return sync_project(request)

    # Must run before responsed.api.responses / models import these names.
    deps.service_of = service_of  # type: ignore[assignment]
    deps.project_of = project_of  # type: ignore[assignment]


def _raw_upstream() -> None:
    """Replace httpx in `OpenAICompatEngine.stream` by the bench's raw keep-alive client.

    An estimate only: it buffers the whole upstream body before parsing (fine for the
    non-streaming phases, not for time to first token) and skips error handling.
    """
    from collections.abc import AsyncIterator
    from urllib.parse import urlsplit

    import orjson

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import overhead

    from responsed.engines import openai_compat
    from responsed.engines.base import Delta, EngineRequest

    idle: dict[str, list[overhead.HTTPClient]] = {}

    async def stream(
        self: openai_compat.OpenAICompatEngine, request: EngineRequest
    ) -> AsyncIterator[Delta]:
        url = urlsplit(self._url)
        pool = idle.setdefault(self._url, [])
        while pool and pool[-1].lost:  # closed by the upstream's keep-alive timeout
            pool.pop()
        conn = pool.pop() if pool else await overhead.connect(url.port or 80)
        body = orjson.dumps(self.build_body(request))
        head = (
            f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in self._headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        sample = await conn.request(head.encode() + body, keep=True)
        pool.append(conn)
        parser = openai_compat._SSEParser()
        for delta in parser.feed(sample.body):
            yield delta
        yield parser.finish(self.base_url)

    openai_compat.OpenAICompatEngine.stream = stream  # type: ignore[method-assign]


PATCHES: dict[str, Callable[[], None]] = {
    "async-deps": _async_deps,
    "raw-upstream": _raw_upstream,
}


def main() -> None:
    for name in filter(None, os.environ.get("RESPONSED_BENCH_PATCHES", "").split(",")):
        PATCHES[name]()
        print(f"patched_serve: applied {name}", file=sys.stderr)
    from responsed.cli import main as serve

    serve()


if __name__ == "__main__":
    main()
