"""The built-in engine's plumbing: the instance pool and the worker → loop channel.

A llama.cpp context serves one request at a time: `Pool` hands out idle instances
(preferring the one whose KV cache shares the longest prefix with the prompt) and
queues a bounded number of waiters; `Channel` carries a worker thread's text to the
event loop, coalesced.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from responsed.engines.base import EngineError, EngineOverloaded, FinishReason, Usage

__all__ = ["Channel", "Done", "Job", "Pool", "common_prefix"]

_FLUSH_S = 0.02


@dataclass(slots=True)
class Done:
    reason: FinishReason
    usage: Usage


@dataclass(slots=True, eq=False)  # identity hashing: jobs live in a set
class Job:
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)


def common_prefix(llama: Any, tokens: Sequence[int]) -> int:
    n = 0
    for a, b in zip(llama.input_ids[: llama.n_tokens].tolist(), tokens, strict=False):
        if a != b:
            break
        n += 1
    return n


class Channel:
    """Worker thread → event loop.

    Text is coalesced so the loop wakes at most every `_FLUSH_S`, not once per token:
    ggml keeps every core busy, and each wakeup of the loop thread preempts a ggml
    thread in mid-decode while its peers spin at a barrier.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[str | Done | BaseException] = asyncio.Queue()
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._scheduled = False
        self._last = 0.0

    def send(self, text: str) -> None:
        with self._lock:
            self._text.append(text)
            now = time.monotonic()
            if self._scheduled or now - self._last < _FLUSH_S:
                return
            self._scheduled, self._last = True, now
        self.call(self._flush)

    def close(self, item: Done | BaseException) -> None:
        self.call(self._flush)
        self.call(self._queue.put_nowait, item)

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(fn, *args)

    def _flush(self) -> None:
        with self._lock:
            text, self._scheduled = "".join(self._text), False
            self._text.clear()
        if text:
            self._queue.put_nowait(text)

    async def get(self) -> str | Done | BaseException:
        return await self._queue.get()


class Pool:
    """Idle instances plus a bounded FIFO of requests waiting for one."""

    def __init__(self, instances: list[Any], max_queue: int) -> None:
        self._idle = list(instances)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._max_queue = max_queue

    async def acquire(self, tokens: Sequence[int]) -> Any:
        if self._idle:
            # The instance whose KV cache shares the longest prefix saves the most work.
            best = max(self._idle, key=lambda llama: common_prefix(llama, tokens))
            self._idle.remove(best)
            return best
        if len(self._waiters) >= self._max_queue:
            raise EngineOverloaded("the model is busy; too many requests are waiting")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def close(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(EngineError("the model is shutting down", status=503))

    def release(self, llama: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(llama)
                return
        self._idle.append(llama)
