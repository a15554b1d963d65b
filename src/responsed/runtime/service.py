"""The Responses service: validate, build and fit the context, start a run; count
tokens and compact conversations from the same prepared context; retrieve, delete,
list input items. (Just over 400 lines: the one place every input source — chains,
conversations, files, hosted tools — meets the context, kept together on purpose.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from responsed.engines.base import (
    Engine,
    EngineError,
    EngineRequest,
    UnsupportedFeature,
)
from responsed.engines.registry import ModelRegistry
from responsed.protocol.errors import APIError, invalid_request, not_found
from responsed.protocol.ids import new_id
from responsed.protocol.request import (
    CompactRequest,
    ContextFields,
    CreateResponseRequest,
    InputTokensRequest,
)
from responsed.protocol.response import new_response
from responsed.runtime.context import normalize_input
from responsed.runtime.context_cache import Context, ContextCache
from responsed.runtime.formats import response_format
from responsed.runtime.hosted_tools import VectorSearch, hosted_maker
from responsed.runtime.run import ResponseRun, as_api_error
from responsed.runtime.sealing import Sealer
from responsed.runtime.summaries import summarize
from responsed.runtime.tools import offered_tools
from responsed.runtime.truncation import count, fit
from responsed.store.base import ResponseStore
from responsed.tools.base import HostedTool
from responsed.tools.file_search import FileSearchTool

__all__ = ["ConversationItems", "FileInputs", "Prepared", "ResponseService"]


class FileInputs(Protocol):
    async def inline(
        self,
        project_id: str,
        items: list[dict[str, Any]],
        *,
        history: bool = False,
        images: bool = False,
    ) -> list[dict[str, Any]]:
        """Items with their input_file parts as text parts, for rendering only."""


class ConversationItems(Protocol):
    async def context_items(self, project_id: str, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's items, oldest first; the hosted 404 when there is none."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request's model input, fitted to the window; what every endpoint starts from."""

    engine: Engine
    request: EngineRequest
    input_items: list[dict[str, Any]]
    context: Context  # the whole context, before truncation
    dropped_items: int
    input_tokens: int | None
    hosted: dict[str, HostedTool]  # hosted tools by the function name the model calls


class ResponseService:
    def __init__(
        self,
        models: ModelRegistry,
        store: ResponseStore,
        sealer: Sealer | None = None,
        conversations: ConversationItems | None = None,
        files: FileInputs | None = None,
        vector_search: VectorSearch | None = None,
    ) -> None:
        self.files = files
        self.vector_search = vector_search
        self.models = models
        self.store = store
        self.sealer = sealer
        self.conversations = conversations
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

    def _unseal(self, item: dict[str, Any]) -> str:
        """The text a sealed item stands for: a compaction's summary, a reasoning's text."""
        if self.sealer is None:
            raise invalid_request(
                "This server has no key to open encrypted content.",
                param="input",
                code="invalid_encrypted_content",
            )
        kind = item["type"]
        payload = self.sealer.unseal(kind, item["encrypted_content"], param="input")
        return str(payload.get("summary" if kind == "compaction" else "text", ""))

    def _seal_reasoning(self, text: str) -> str:
        assert self.sealer is not None
        return self.sealer.seal("reasoning", {"text": text})

    async def _prepare(
        self, request: ContextFields, project_id: str, *, refuse: bool = True, **options: Any
    ) -> Prepared:
        """Everything that can be refused is refused here, before any event is sent."""
        engine = self._engine(request.model)
        tools, choice, hosted = offered_tools(
            request, hosted_maker(self.vector_search, project_id, request)
        )
        for tool in hosted.values():  # unknown vector stores are a 404 before generating
            if isinstance(tool, FileSearchTool) and self.vector_search is not None:
                for store_id in tool.vector_store_ids:
                    await self.vector_search.retrieve_store(project_id, store_id)
        input_items = normalize_input(request.input)
        history = Context()
        conversation_id = conversation_of(request)
        if conversation_id is not None:
            if request.previous_response_id:
                raise invalid_request(
                    "Mutually exclusive parameters: Ensure you are only providing one of: "
                    "'previous_response_id' or 'conversation'.",
                    param="conversation",
                    code="mutually_exclusive_parameters",
                )
            history = await self._conversation(project_id, conversation_id)
        elif request.previous_response_id:
            history = await self._history(project_id, request.previous_response_id)
        _check_call_outputs(input_items, history.call_ids)
        inlined = await self._inline(project_id, input_items, images=engine.capabilities.images)
        context = history.extend(inlined, self._unseal)
        if not engine.capabilities.images and _has_images(input_items):
            raise invalid_request(
                f"The model '{request.model}' does not accept image inputs.",
                param="input",
                code="unsupported_value",
            )
        base = EngineRequest(
            messages=[],
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=request.parallel_tool_calls is not False,
            response_format=response_format(request),
            prompt_cache_key=request.prompt_cache_key,
            **options,
        )
        # Reasoning goes back to the model only in the turn that answers its calls.
        answered = [i["call_id"] for i in input_items if i["type"] == "function_call_output"]
        fitted = await fit(
            engine,
            base,
            context.with_reasoning(answered),
            request.instructions,
            truncation=request.truncation or "disabled",
            refuse=refuse,
        )
        return Prepared(
            engine,
            fitted.request,
            input_items,
            context,
            fitted.dropped_items,
            fitted.input_tokens,
            hosted,
        )

    async def create(self, request: CreateResponseRequest, project_id: str) -> ResponseRun:
        """A foreground response, started (its first delta awaited)."""
        response = new_response(
            request, response_id=new_id("resp"), created_at=int(time.time()), status="in_progress"
        )
        run = await self.prepare_run(request, project_id, response)
        await run.start()
        return run

    async def prepare_run(
        self, request: CreateResponseRequest, project_id: str, response: dict[str, Any]
    ) -> ResponseRun:
        """Refuse what is refusable and build the run producing `response`."""
        if request.background and request.store is False:
            raise invalid_request(
                "Background mode requires `store` to be true.", param="background"
            )
        if request.prompt is not None:
            # Ignoring it would silently drop the template's instructions and input.
            raise invalid_request(
                "prompt templates are not supported by this server.",
                param="prompt",
                code="unsupported_value",
            )
        logprobs = "message.output_text.logprobs" in (request.include or ())
        prepared = await self._prepare(
            request,
            project_id,
            temperature=request.temperature,
            top_p=request.top_p,
            max_output_tokens=request.max_output_tokens,
            user=request.safety_identifier or request.user,
            top_logprobs=(request.top_logprobs or 0) if logprobs else None,
            reasoning_effort=request.reasoning.effort if request.reasoning else None,
        )
        max_calls = request.max_tool_calls
        if request.parallel_tool_calls is False:
            max_calls = 1
        return ResponseRun(
            prepared.engine,
            prepared.request,
            response,
            prepared.input_items,
            self.store,
            project_id,
            prepared.context,
            self.contexts,
            schema=strict_schema_of(request),
            max_calls=max_calls,
            seal_reasoning=self._seal_reasoning
            if self.sealer is not None and "reasoning.encrypted_content" in (request.include or ())
            else None,
            sent={"dropped_items": prepared.dropped_items} if prepared.dropped_items else None,
            hide_reasoning=self.models.configs[request.model].reasoning_visibility == "hidden",
            summary=(request.reasoning.summary or request.reasoning.generate_summary)
            if request.reasoning
            else None,
            conversation_id=conversation_of(request) if response["store"] else None,
            hosted=prepared.hosted,
        )

    async def input_tokens(self, request: InputTokensRequest, project_id: str) -> dict[str, Any]:
        prepared = await self._prepare(request, project_id, refuse=False)
        tokens = prepared.input_tokens
        if tokens is None:
            tokens = await count(prepared.engine, prepared.request)
        return {"object": "response.input_tokens", "input_tokens": tokens}

    async def compact(self, request: CompactRequest, project_id: str) -> dict[str, Any]:
        if self.sealer is None:
            raise invalid_request("This server has no key to seal compacted content.")
        fields = ContextFields(
            model=request.model,
            input=request.input,
            instructions=request.instructions,
            previous_response_id=request.previous_response_id,
            prompt_cache_key=request.prompt_cache_key,
            truncation="auto",
        )
        prepared = await self._prepare(fields, project_id)
        items = await self._chain_and_input(project_id, request.previous_response_id)
        items.extend(prepared.input_items)
        if not items:
            raise invalid_request(
                "Nothing to compact: give 'input' or 'previous_response_id'.", param="input"
            )
        try:
            summary, usage = await summarize(prepared.engine, prepared.request)
        except UnsupportedFeature as exc:
            raise invalid_request(exc.message, param=exc.param) from None
        except EngineError as exc:
            raise as_api_error(exc) from None
        compaction = {
            "id": new_id("cmp"),
            "type": "compaction",
            "encrypted_content": self.sealer.seal("compaction", {"summary": summary}),
            "created_by": request.model,
        }
        kept = [i for i in items if i["type"] == "message" and i["role"] == "user"]
        return {
            "id": new_id("resp"),
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*kept, compaction],
            "usage": usage,
        }

    async def _chain_and_input(
        self, project_id: str, previous_response_id: str | None
    ) -> list[dict[str, Any]]:
        if not previous_response_id:
            return []
        chain = await self.store.chain_items(project_id, previous_response_id)
        return list(chain or ())

    async def _conversation(self, project_id: str, conversation_id: str) -> Context:
        if self.conversations is None:
            raise invalid_request("Conversations are not enabled.", param="conversation")
        items = await self.conversations.context_items(project_id, conversation_id)
        return Context.of(await self._inline(project_id, items, history=True), self._unseal)

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
            chain = await self._inline(project_id, chain, history=True)
            history = Context.of(chain, self._unseal)
            self.contexts.put(project_id, response_id, history)
        return history

    async def _inline(
        self,
        project_id: str,
        items: list[dict[str, Any]],
        *,
        history: bool = False,
        images: bool = False,
    ) -> list[dict[str, Any]]:
        """input_file parts → their text (and PDF page images for vision models), before
        rendering (file reads are async)."""
        if self.files is None:
            return items
        return await self.files.inline(project_id, items, history=history, images=images)

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


def conversation_of(request: ContextFields) -> str | None:
    conversation = request.conversation
    if conversation is None or isinstance(conversation, str):
        return conversation
    return conversation.id


def strict_schema_of(request: CreateResponseRequest) -> tuple[str, dict[str, Any]] | None:
    fmt = request.text.format if request.text else None
    if fmt is None or fmt.type != "json_schema" or not fmt.strict or fmt.schema_ is None:
        return None
    return fmt.name or "response", fmt.schema_


def _has_images(items: list[dict[str, Any]]) -> bool:
    return any(
        part.get("type") == "input_image"
        for item in items
        if item["type"] == "message"
        for part in item["content"]
    )
