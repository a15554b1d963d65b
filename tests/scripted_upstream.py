"""A deterministic, scripted Chat Completions server for tests.

A real uvicorn server on 127.0.0.1 (free port) in a background thread, answering
`POST /v1/chat/completions` from a FIFO of `Turn`s, streaming or not, and `GET /v1/models`.

    with ScriptedUpstream() as upstream:
        upstream.enqueue(Turn(content="hello there"), Turn(tool_calls=[("call_1", "f", "{}")]))
        ... point an engine at upstream.base_url ...
        assert upstream.requests[0]["model"] == "m"
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

__all__ = ["ScriptedUpstream", "Turn"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Turn:
    """One scripted reply."""

    content: str | None = None
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, args)
    reasoning: str | None = None
    refusal: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    error_status: int | None = None
    error_message: str = "scripted failure"
    fail_after_chunks: int | None = None
    delay: float = 0.0
    # Beyond the Chat Completions basics: imitate servers that differ.
    send_usage: bool = True  # False: no usage chunk even when `include_usage` is asked
    ignore_stream: bool = False  # True: answer one JSON completion even to `stream: true`

    @property
    def reason(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


class _DroppedError(Exception):
    """Raised mid-response so uvicorn closes the socket without ending the chunked body."""


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or [text]


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _usage(turn: Turn) -> dict[str, Any]:
    return {
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "total_tokens": turn.prompt_tokens + turn.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": turn.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
    }


def _deltas(turn: Turn) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if turn.reasoning is not None:
        deltas += [{"reasoning_content": w} for w in _words(turn.reasoning)]
    if turn.content is not None:
        deltas += [{"content": w} for w in _words(turn.content)]
    if turn.refusal is not None:
        deltas += [{"refusal": w} for w in _words(turn.refusal)]
    for index, (call_id, name, arguments) in enumerate(turn.tool_calls):
        head = {"index": index, "id": call_id, "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _pieces(arguments)
        ]
    return deltas


def _completion(turn: Turn, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if turn.reasoning is not None:
        message["reasoning_content"] = turn.reasoning
    if turn.refusal is not None:
        message["refusal"] = turn.refusal
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": c, "type": "function", "function": {"name": n, "arguments": a}}
            for c, n, a in turn.tool_calls
        ]
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": turn.reason}],
        "usage": _usage(turn),
    }


class ScriptedUpstream:
    """Replies to each chat completion with the next enqueued `Turn` (default: "ok")."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.peers: list[tuple[str, int]] = []  # client address of each request
        self.disconnects = 0  # streams the client abandoned before their end
        self._turns: deque[Turn] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(
            self._app,
            log_config=None,  # records go to the root logger, i.e. pytest's capture
            access_log=False,
            interface="asgi3",
            lifespan="off",
            ws="none",
            loop="asyncio",
            timeout_graceful_shutdown=1,
            backlog=1024,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="scripted"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted upstream did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedUpstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------

    def enqueue(self, *turns: Turn) -> None:
        with self._lock:
            self._turns.extend(turns)

    def reset(self) -> None:
        with self._lock:
            self._turns.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.peers.clear()
            self.disconnects = 0

    def _next_turn(self) -> Turn:
        with self._lock:
            return self._turns.popleft() if self._turns else Turn(content="ok")

    # -- ASGI --------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        if method == "GET" and path == "/v1/models":
            models = {
                "object": "list",
                "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "me"}],
            }
            await _send_json(send, 200, models)
            return
        if method != "POST" or path != "/v1/chat/completions":
            await _send_json(send, 404, _error(f"no route {method} {path}", "not_found"))
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await _send_json(send, 400, _error("body is not JSON", "invalid_request_error"))
            return
        with self._lock:
            self.requests.append(body)
            self.peers.append(tuple(scope["client"]))
            self.request_headers.append(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            )
        turn = self._next_turn()
        if turn.error_status is not None:
            kind = "invalid_request_error" if turn.error_status < 500 else "server_error"
            await _send_json(send, turn.error_status, _error(turn.error_message, kind))
            return
        model = str(body.get("model", "scripted"))
        if body.get("stream") and not turn.ignore_stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            logprobs = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
            await self._stream(
                receive, send, turn, model, include_usage and turn.send_usage, logprobs
            )
        else:
            await _send_json(send, 200, _completion(turn, model))

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        turn: Turn,
        model: str,
        include_usage: bool,
        logprobs: int | None = None,
    ) -> None:
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": model}
        base["created"] = int(time.time())
        chunks = [
            {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
            for d in _deltas(turn)
        ]
        if logprobs is not None:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["delta"].get("content"):
                    choice["logprobs"] = {
                        "content": [_logprob(choice["delta"]["content"], logprobs)]
                    }
        chunks.append(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": turn.reason}]}
        )
        if include_usage:
            chunks.append({**base, "choices": [], "usage": _usage(turn)})
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for sent, chunk in enumerate(chunks):
                if turn.fail_after_chunks is not None and sent >= turn.fail_after_chunks:
                    raise _DroppedError
                if turn.delay and sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), turn.delay)
                if gone.is_set():
                    self.disconnects += 1
                    return
                event = b"data: " + orjson.dumps(chunk) + b"\n\n"
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if turn.fail_after_chunks is not None and turn.fail_after_chunks >= len(chunks):
                raise _DroppedError
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        finally:
            watcher.cancel()


def _logprob(token: str, top: int) -> dict[str, Any]:
    """A deterministic stand-in: each scripted word is one token of logprob -0.25."""
    alternatives = [token, *(f"alt{n}" for n in range(1, top))][:top]
    return {
        "token": token,
        "logprob": -0.25,
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": t, "logprob": -0.25 * (n + 1), "bytes": list(t.encode())}
            for n, t in enumerate(alternatives)
        ],
    }


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
