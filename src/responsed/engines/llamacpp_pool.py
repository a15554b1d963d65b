"""The built-in engine's plumbing: the instance pool and the worker → loop channel.

A llama.cpp context serves one request at a time: `Pool` hands out idle instances
(preferring the one whose KV cache shares the longest prefix with the prompt) and
queues a bounded number of waiters; `Channel` carries a worker thread's text (and, when
asked for, the log probabilities of the tokens making it up) to the event loop,
coalesced.
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

import numpy as np

from responsed.engines.base import (
    EngineError,
    EngineOverloaded,
    FinishReason,
    TextDelta,
    TokenLogprob,
    Usage,
)

__all__ = ["Channel", "Done", "Job", "Pool", "common_prefix", "shared_prefix"]

_FLUSH_S = 0.02


@dataclass(slots=True)
class Done:
    reason: FinishReason
    usage: Usage


@dataclass(slots=True, eq=False)  # identity hashing: jobs live in a set
class Job:
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)


def shared_prefix(a: Any, b: Any) -> int:
    """The length of the common prefix of two token arrays (numpy or sequences)."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def common_prefix(llama: Any, tokens: Sequence[int]) -> int:
    """How many leading `tokens` the live KV cache of `llama` already holds."""
    return shared_prefix(llama.input_ids[: llama.n_tokens], tokens)


class Channel:
    """Worker thread → event loop.

    Text is coalesced so the loop wakes at most every `_FLUSH_S`, not once per token:
    ggml keeps every core busy, and each wakeup of the loop thread preempts a ggml
    thread in mid-decode while its peers spin at a barrier. Without log probabilities a
    flush queues a plain `str`; with them (`logprobs=True`) a `TextDelta` whose logprobs
    are the concatenation of the coalesced pieces' own, so they stay aligned.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, logprobs: bool = False) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[str | TextDelta | Done | BaseException] = asyncio.Queue()
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self._scheduled = False
        self._last = 0.0

    def send(self, text: str, logprobs: Sequence[TokenLogprob] | None = None) -> None:
        with self._lock:
            self._text.append(text)
            if self._logprobs is not None and logprobs:
                self._logprobs.extend(logprobs)
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
            logprobs = self._logprobs
            if logprobs is not None:
                self._logprobs = []
        if text:
            self._queue.put_nowait(text if logprobs is None else TextDelta(text, tuple(logprobs)))

    async def get(self) -> str | TextDelta | Done | BaseException:
        return await self._queue.get()


class Pool:
    """Idle instances plus a bounded FIFO of requests waiting for one."""

    def __init__(self, instances: list[Any], max_queue: int, *, by_prefix: bool = True) -> None:
        self._idle = list(instances)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._max_queue = max_queue
        self._by_prefix = by_prefix

    async def acquire(self, tokens: Sequence[int]) -> Any:
        if self._idle:
            # The instance whose KV cache shares the longest prefix saves the most work.
            best = self._idle[-1]
            if self._by_prefix and len(self._idle) > 1:
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
