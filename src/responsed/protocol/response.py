"""The Response object: every key the hosted API returns, echoing the request."""

from __future__ import annotations

from typing import Any

from responsed.protocol.request import (
    CreateResponseRequest,
    FunctionTool,
    TextConfig,
)

__all__ = ["echo_tool", "echo_tool_choice", "new_response", "usage_object"]


def echo_tool(tool: Any) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        out: dict[str, Any] = {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": True if tool.strict is None else tool.strict,
        }
        if tool.defer_loading is not None:
            out["defer_loading"] = tool.defer_loading
        return out
    dumped: dict[str, Any] = tool.model_dump(by_alias=True, exclude_none=True)
    return dumped


def echo_tool_choice(choice: Any) -> Any:
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    return choice.model_dump(by_alias=True, exclude_none=True)


def _echo_text(text: TextConfig | None) -> dict[str, Any]:
    fmt: dict[str, Any] = {"type": "text"}
    verbosity = "medium"
    if text is not None:
        if text.format is not None and text.format.type == "json_schema":
            # The Open Responses document echoes a JSON-schema format without its schema.
            fmt = {
                "type": "json_schema",
                "name": text.format.name,
                "description": text.format.description,
                "schema": None,
                "strict": bool(text.format.strict),
            }
        elif text.format is not None:
            fmt = {"type": text.format.type}
        verbosity = text.verbosity or verbosity
    return {"format": fmt, "verbosity": verbosity}


def new_response(
    request: CreateResponseRequest, *, response_id: str, created_at: int, status: str
) -> dict[str, Any]:
    reasoning = request.reasoning
    conversation = request.conversation
    conv_id = conversation if isinstance(conversation, str) else getattr(conversation, "id", None)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": bool(request.background),
        "completed_at": None,
        "conversation": {"id": conv_id} if conv_id else None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "model": request.model,
        "output": [],
        "parallel_tool_calls": True
        if request.parallel_tool_calls is None
        else request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "prompt": request.prompt,
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_retention": request.prompt_cache_retention,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None,
        },
        "safety_identifier": request.safety_identifier,
        "service_tier": request.service_tier or "default",
        "store": True if request.store is None else request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": _echo_text(request.text),
        "tool_choice": echo_tool_choice(request.tool_choice),
        "tools": [echo_tool(t) for t in request.tools or []],
        "top_logprobs": request.top_logprobs or 0,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "truncation": request.truncation or "disabled",
        "usage": None,
        "user": request.user,
        "metadata": request.metadata or {},
    }


def usage_object(
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cached_tokens,
            "cache_write_tokens": cache_write_tokens,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }
