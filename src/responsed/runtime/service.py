"""The Responses service: validate, build context, run the engine, store the result.

One event pipeline serves every mode: `ResponseRun.events()` is forwarded as SSE for
`stream=true`, and `ResponseRun.collect()` consumes the very same stream for the
non-streaming answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from responsed.engines.base import (
    Delta,
    Engine,
    EngineError,
    EngineOverloaded,
    EngineRequest,
    Finish,
    UnsupportedFeature,
)
from responsed.engines.registry import ModelRegistry
from responsed.protocol.errors import APIError, invalid_request, not_found
from responsed.protocol.ids import new_id
from responsed.protocol.request import CreateResponseRequest
from responsed.protocol.response import new_response
from responsed.runtime.context import normalize_input, with_instructions
from responsed.runtime.context_cache import Context, ContextCache
from responsed.runtime.formats import response_format
from responsed.runtime.tools import offered_tools
from responsed.runtime.translator import Event, Translator
from responsed.store.base import ResponseRecord, ResponseStore

__all__ = ["ResponseRun", "ResponseService"]


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
    error: EngineError | None = field(default=None)
    _deltas: AsyncGenerator[Delta, None] | None = field(default=None)
    _first: Delta | None = field(default=None)
    _first_error: EngineError | None = field(default=None)

    async def _persist(self) -> None:
        if not self.response["store"]:
            return
        await self.store.put_response(
            ResponseRecord(
                id=self.response["id"],
                project_id=self.project_id,
                previous_response_id=self.response["previous_response_id"],
                created_at=self.response["created_at"],
                status=self.response["status"],
                body=self.response,
                input_items=self.input_items,
            )
        )
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
        deltas = self.engine.stream(self.engine_request)
        try:
            self._first = await anext(deltas)
        except StopAsyncIteration:
            self._first = None
        except UnsupportedFeature as exc:
            raise invalid_request(exc.message, param=exc.param) from None
        except EngineError as exc:
            if exc.status < 500:
                raise _as_api_error(exc) from None
            self._first_error = exc
        except BaseException:
            await deltas.aclose()
            raise
        self._deltas = deltas

    async def events(self) -> AsyncIterator[Event]:
        translator = Translator(self.response)
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
            async with aclosing(self._deltas) as deltas:
                delta = self._first
                while delta is not None:
                    if isinstance(delta, Finish):
                        closing = translator.finish(delta)
                        break
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
                translator.cancel()
                await asyncio.shield(asyncio.ensure_future(self._persist()))
            raise
        # Persist before the terminal event, so a client that saw `response.completed`
        # can always retrieve the response.
        await self._persist()
        for event in closing:
            yield event

    async def collect(self) -> dict[str, Any]:
        """Run to the end and return the final Response (non-streaming mode)."""
        async for _ in self.events():
            pass
        if self.error is not None:
            raise _as_api_error(self.error)
        return self.response


class ResponseService:
    def __init__(self, models: ModelRegistry, store: ResponseStore) -> None:
        self.models = models
        self.store = store
        self.contexts = ContextCache()

    def _engine(self, model: str) -> Engine:
        engine = self.models.get(model)
        if engine is None:
            raise not_found(
                f"The model '{model}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return engine

    async def create(self, request: CreateResponseRequest, project_id: str) -> ResponseRun:
        """Everything that can be refused is refused here, before any event is sent."""
        engine = self._engine(request.model)
        if request.background:
            raise invalid_request(
                "background mode is not supported by this server yet.",
                param="background",
                code="unsupported_value",
            )
        if request.prompt is not None:
            # Ignoring it would silently drop the template's instructions and input.
            raise invalid_request(
                "prompt templates are not supported by this server.",
                param="prompt",
                code="unsupported_value",
            )
        if request.conversation is not None:
            raise invalid_request(
                "conversations are not supported by this server yet.",
                param="conversation",
                code="unsupported_value",
            )
        tools, choice = offered_tools(request)
        input_items = normalize_input(request.input)
        history = Context()
        if request.previous_response_id:
            history = await self._history(project_id, request.previous_response_id)
        _check_call_outputs(input_items, history.call_ids)
        context = history.extend(input_items)
        if not engine.capabilities.images and _has_images(input_items):
            raise invalid_request(
                f"The model '{request.model}' does not accept image inputs.",
                param="input",
                code="unsupported_value",
            )
        engine_request = EngineRequest(
            messages=with_instructions(request.instructions, context.messages),
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=request.parallel_tool_calls is not False,
            temperature=request.temperature,
            top_p=request.top_p,
            max_output_tokens=request.max_output_tokens,
            response_format=response_format(request),
            user=request.safety_identifier or request.user,
            prompt_cache_key=request.prompt_cache_key,
        )
        response = new_response(
            request, response_id=new_id("resp"), created_at=int(time.time()), status="in_progress"
        )
        run = ResponseRun(
            engine,
            engine_request,
            response,
            input_items,
            self.store,
            project_id,
            context,
            self.contexts,
        )
        await run.start()
        return run

    async def _history(self, project_id: str, response_id: str) -> Context:
        """The previous response's context: cached, or the chain read in one query."""
        history = self.contexts.get(project_id, response_id)
        if history is None:
            chain = await self.store.chain_items(project_id, response_id)
            if chain is None:
                raise invalid_request(
                    f"Previous response with id '{response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = Context.of(chain)
            self.contexts.put(project_id, response_id, history)
        return history

    async def retrieve(self, project_id: str, response_id: str) -> dict[str, Any]:
        body = await self.store.get_response(project_id, response_id)
        if body is None:
            raise _response_not_found(response_id)
        return body

    async def delete(self, project_id: str, response_id: str) -> dict[str, Any]:
        if not await self.store.delete_response(project_id, response_id):
            raise _response_not_found(response_id)
        # Cached contexts of later turns include the deleted one's items; dropping them
        # all (deletes are rare) makes every later turn see the chain the store sees.
        self.contexts.clear()
        return {"id": response_id, "object": "response", "deleted": True}

    async def cancel(self, project_id: str, response_id: str) -> dict[str, Any]:
        body = await self.retrieve(project_id, response_id)
        if not body.get("background"):
            raise invalid_request("Cannot cancel a synchronous response.", param="response_id")
        return body

    async def input_items(
        self,
        project_id: str,
        response_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> dict[str, Any]:
        if not 1 <= limit <= 100:
            raise invalid_request(
                "Invalid 'limit': expected an integer between 1 and 100.", param="limit"
            )
        page = await self.store.list_input_items(
            project_id, response_id, after=after, limit=limit, order=order
        )
        if page is None:
            raise _response_not_found(response_id)
        data = page.data
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }


def _as_api_error(error: EngineError) -> APIError:
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


def _response_not_found(response_id: str) -> APIError:
    return not_found(f"Response with id '{response_id}' not found.", code="not_found")


def _check_call_outputs(items: list[dict[str, Any]], earlier_calls: frozenset[str]) -> None:
    calls: set[str] = set()
    for item in items:
        if item["type"] == "function_call":
            calls.add(item["call_id"])
        elif item["type"] == "function_call_output" and not (
            item["call_id"] in calls or item["call_id"] in earlier_calls
        ):
            raise invalid_request(
                f"No tool call found for function call output with call_id {item['call_id']}.",
                param="input",
            )


def _has_images(items: list[dict[str, Any]]) -> bool:
    return any(
        part.get("type") == "input_image"
        for item in items
        if item["type"] == "message"
        for part in item["content"]
    )
