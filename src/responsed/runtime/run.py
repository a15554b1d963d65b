"""One response's generation: the single event pipeline every mode consumes.

`ResponseRun.events()` is forwarded as SSE for `stream=true`, and
`ResponseRun.collect()` consumes the very same stream for the non-streaming answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from responsed.engines.base import (
    Engine,
    EngineError,
    EngineOverloaded,
    EngineRequest,
    Finish,
    ReasoningDelta,
    UnsupportedFeature,
)
from responsed.protocol.errors import APIError, invalid_request
from responsed.protocol.strict_schema import validate_output
from responsed.runtime.context_cache import Context, ContextCache
from responsed.runtime.summaries import summarize_reasoning
from responsed.runtime.tool_loop import hosted_rounds
from responsed.runtime.translator import Event, Fed, Translator
from responsed.store.base import ResponseRecord, ResponseStore
from responsed.tools.base import HostedTool

__all__ = ["ResponseRun", "as_api_error"]


@dataclass(slots=True)
class ResponseRun:
    """A validated response, ready to generate; `events()` may be consumed once."""

    engine: Engine
    engine_request: EngineRequest
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    store: ResponseStore
    project_id: str
    context: Context
    contexts: ContextCache
    # The strict `text.format` schema (name, schema) the answer must validate against.
    schema: tuple[str, dict[str, Any]] | None = None
    max_calls: int | None = None
    # Seals a reasoning item's text into its `encrypted_content` (include asked for it).
    seal_reasoning: Callable[[str], str] | None = None
    summary: str | None = None  # reasoning.summary: auto, concise or detailed
    hide_reasoning: bool = False
    sent: dict[str, Any] | None = None  # what truncation left out, stored with the response
    conversation_id: str | None = None  # items are appended to it when the response ends
    # A background run: `response.created`/`queued` were stored at submission, so its
    # events start at this sequence number with `response.in_progress`.
    resume_at: int = 0
    # Stores the finished response with its closing events (background runs write both
    # in one transaction); None: `store.put_response` when `store` is true.
    finalize: Callable[[ResponseRecord, list[Event]], Awaitable[None]] | None = None
    hosted: dict[str, HostedTool] = field(default_factory=dict)  # tools the server runs
    error: EngineError | None = field(default=None)
    _deltas: AsyncGenerator[Fed, None] | None = field(default=None)
    _first: Fed | None = field(default=None)
    _first_error: EngineError | None = field(default=None)

    def record(self) -> ResponseRecord:
        return ResponseRecord(
            id=self.response["id"],
            project_id=self.project_id,
            previous_response_id=self.response["previous_response_id"],
            created_at=self.response["created_at"],
            status=self.response["status"],
            body=self.response,
            input_items=self.input_items,
            sent=self.sent,
            conversation_id=self.conversation_id,
        )

    async def _persist(self, closing: list[Event]) -> None:
        if self.finalize is not None:
            await self.finalize(self.record(), closing)
        elif self.response["store"]:
            await self.store.put_response(self.record())
        else:
            return
        if self.conversation_id is None:
            self.contexts.put(
                self.project_id,
                self.response["id"],
                self.context.extend(self.response["output"]),
                parent=self.response["previous_response_id"],
            )

    async def start(self) -> None:
        """Start generation and wait for the first delta.

        Engines refuse work lazily (queue full, prompt too long, schema they cannot
        compile); waiting for the first delta turns those refusals into HTTP errors
        (429, 400) instead of a stream that fails at once. Server-side failures
        (upstream unreachable) still become a `response.failed` stream, as hosted.
        """
        deltas: AsyncGenerator[Fed, None] = (
            hosted_rounds(self.engine, self.engine_request, self.hosted)
            if self.hosted
            else self.engine.stream(self.engine_request)
        )
        try:
            self._first = await anext(deltas)
        except StopAsyncIteration:
            self._first = None
        except UnsupportedFeature as exc:
            raise invalid_request(exc.message, param=exc.param) from None
        except EngineError as exc:
            if exc.status < 500:
                raise as_api_error(exc) from None
            self._first_error = exc
        except BaseException:
            await deltas.aclose()
            raise
        self._deltas = deltas

    async def events(self) -> AsyncIterator[Event]:
        translator = Translator(
            self.response,
            max_calls=self.max_calls,
            seal_reasoning=self.seal_reasoning,
            hide_reasoning=self.hide_reasoning,
            first_sequence=self.resume_at,
        )
        if not self.resume_at:
            for event in translator.start():
                yield event
        for event in translator.in_progress():
            yield event
        try:
            if self._first_error is not None:
                raise self._first_error
            if self._deltas is None:
                raise RuntimeError("ResponseRun.start() was not awaited")
            closing: list[Event] = []
            # With a summary asked for, what follows the reasoning is held back until the
            # model is done, then the summary pass runs (the engine is free again: a
            # built-in model serves one request at a time) and the held deltas follow.
            held: list[Fed] | None = None
            async with aclosing(self._deltas) as deltas:
                delta = self._first
                while delta is not None:
                    if isinstance(delta, Finish):
                        if held is not None or translator.reasoning_open():
                            async for event in self._summarize(translator, held or []):
                                yield event
                        if delta.reason == "stop":
                            self._check_output(translator)
                        closing = translator.finish(delta)
                        break
                    if held is not None:
                        held.append(delta)
                    elif (
                        self.summary is not None
                        and translator.reasoning_open()
                        and not isinstance(delta, ReasoningDelta)
                    ):
                        held = [delta]
                    else:
                        for event in translator.feed(delta):
                            yield event
                    delta = await anext(deltas, None)
                else:
                    closing = translator.fail("server_error", "the model stopped without finishing")
        except EngineError as exc:
            self.error = exc
            closing = translator.fail(_error_code(exc.status), exc.message)
        except UnsupportedFeature as exc:
            self.error = EngineError(exc.message, status=400, code="invalid_request_error")
            closing = translator.fail("invalid_prompt", exc.message)
        except BaseException:
            # The consumer went away (client disconnect) or we are shutting down: keep
            # what was generated, marked cancelled, even though this task is cancelled.
            if not translator.finished:
                cancelled = translator.cancel()
                await asyncio.shield(asyncio.ensure_future(self._persist(cancelled)))
            raise
        # Persist before the terminal event, so a client that saw `response.completed`
        # can always retrieve the response.
        await self._persist(closing)
        for event in closing:
            yield event

    def _check_output(self, translator: Translator) -> None:
        """Under a strict schema, an answer that does not validate fails the response
        (only upstreams can produce one; the built-in engine decodes under a grammar)."""
        if self.schema is None:
            return
        text = translator.output_text()
        if text is None:
            return
        name, schema = self.schema
        problem = validate_output(schema, text)
        if problem is not None:
            raise EngineError(
                f"The model's output does not match the JSON schema '{name}': {problem}",
                status=502,
                code="invalid_model_output",
            )

    async def _summarize(self, translator: Translator, held: list[Fed]) -> AsyncIterator[Event]:
        if self.summary is not None and translator.reasoning_open():
            pieces = [
                p
                async for p in summarize_reasoning(
                    self.engine, translator.reasoning_text(), self.summary
                )
            ]
            for event in translator.summary(pieces):
                yield event
        for delta in held:
            for event in translator.feed(delta):
                yield event

    async def collect(self) -> dict[str, Any]:
        """Run to the end and return the final Response (non-streaming mode)."""
        async for _ in self.events():
            pass
        if self.error is not None:
            raise as_api_error(self.error)
        return self.response


def as_api_error(error: EngineError) -> APIError:
    kind = "invalid_request_error" if error.status < 500 else "server_error"
    headers = None
    if isinstance(error, EngineOverloaded):
        kind = "rate_limit_error"
        headers = {"Retry-After": str(max(1, round(error.retry_after)))}
    return APIError(error.status, error.message, type=kind, code=error.code, headers=headers)


def _error_code(status: int) -> str:
    """Response.error.code is a closed set in the SDK; map engine failures onto it."""
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"
