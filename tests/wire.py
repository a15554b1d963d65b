"""Wire-contract checks used by every integration test.

Every Response object and streaming event is validated against the Open Responses
document (JSON Schema 2020-12, refs resolved within the file) when its type is one the
document defines, and always parsed by the pinned `openai` SDK's own types.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
from jsonschema import Draft202012Validator
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from responsed.testing import assert_valid_event_stream

# The repository is checked out beside `shared/`, locally and in CI.
SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "spec" / "openresponses-openapi.json"
SPEC_URI = "urn:openresponses"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
_REGISTRY: Registry[Any] = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

# event type → schema name, for every streaming event the document defines
EVENT_SCHEMAS: dict[str, str] = {
    schema["properties"]["type"]["enum"][0]: name
    for name, schema in SPEC["components"]["schemas"].items()
    if name.endswith("StreamingEvent") and "enum" in schema.get("properties", {}).get("type", {})
}
_ITEM_SCHEMAS = {
    "message": "Message",
    "function_call": "FunctionCall",
    "function_call_output": "FunctionCallOutput",
    "reasoning": "ReasoningBody",
}
SPEC_ITEM_TYPES = set(_ITEM_SCHEMAS)

seen_schemas: set[str] = set()  # Open Responses schemas some object was validated against
seen_events: set[str] = set()  # every event type a test saw, spec-defined or not


@cache
def validator(name: str) -> Draft202012Validator:
    ref = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
    return Draft202012Validator(ref, registry=_REGISTRY)


def _spec_typed(response: dict[str, Any]) -> bool:
    tools_ok = all(t.get("type") == "function" for t in response.get("tools", []))
    items_ok = all(i.get("type") in SPEC_ITEM_TYPES for i in response.get("output", []))
    return tools_ok and items_ok and not _cites_files(response)


def _cites_files(obj: Any) -> bool:
    """The document's Annotation is url_citation only: a file_citation (file_search's
    annotation, as the SDK defines it) is a type it does not define."""
    return b'"file_citation"' in orjson.dumps(obj)


def _sdk_view(response: dict[str, Any]) -> dict[str, Any]:
    """The one place the two contracts disagree: the Open Responses document echoes a
    JSON-schema `text.format` with `schema: null`, the SDK's type wants a dict (the SDK
    itself parses the null without complaint; only strict validation objects)."""
    fmt = (response.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema" and fmt.get("schema") is None:
        text = {**response["text"], "format": {**fmt, "schema": {}}}
        return {**response, "text": text}
    return response


def check_response(obj: dict[str, Any]) -> Response:
    if _spec_typed(obj):
        validator("ResponseResource").validate(obj)
        seen_schemas.add("ResponseResource")
        for item in obj["output"]:
            seen_schemas.add(_ITEM_SCHEMAS[item["type"]])
    return Response.model_validate(_sdk_view(obj))


def check_sdk_response(response: Response) -> Response:
    """Validate what the server sent, as the SDK received it (fields it did not send
    stay unset, so `exclude_unset` recovers the wire object)."""
    return check_response(response.model_dump(mode="json", exclude_unset=True))


# The SDK and the hosted API name raw reasoning events `response.reasoning_text.*`; the
# Open Responses document calls the same shapes `response.reasoning.*`. We send the SDK's
# names and check the payloads against the document's schemas under its names.
SPEC_EVENT_ALIASES = {
    "response.reasoning_text.delta": "response.reasoning.delta",
    "response.reasoning_text.done": "response.reasoning.done",
}


def check_event(event: dict[str, Any]) -> Any:
    seen_events.add(event["type"])
    alias = SPEC_EVENT_ALIASES.get(event["type"])
    if alias is not None:
        validator(EVENT_SCHEMAS[alias]).validate({**event, "type": alias})
        seen_schemas.add(EVENT_SCHEMAS[alias])
    name = EVENT_SCHEMAS.get(event["type"])
    response = event.get("response")
    item = event.get("item")
    typed = (
        (response is None or _spec_typed(response))
        and (item is None or item.get("type") in SPEC_ITEM_TYPES)
        and not _cites_files(event)
    )
    if name is not None and typed:
        validator(name).validate(event)
        seen_schemas.add(name)
    if response is not None:
        event = {**event, "response": _sdk_view(response)}
    return _EVENT_ADAPTER.validate_python(event)


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Schemas of each event, then the grammar of the whole stream."""
    for event in events:
        check_event(event)
    final = assert_valid_event_stream(events)
    if final is not None:
        check_response(final)
    return final


def check_resumed(events: list[dict[str, Any]]) -> None:
    """A resumed stream: each event's schemas, and no gap in its sequence numbers (the
    tests check the grammar of prefix + resumed part)."""
    first = events[0]["sequence_number"]
    for n, event in enumerate(events):
        check_event(event)
        assert event["sequence_number"] == first + n, f"gap before {event}"


def parse_sse(body: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        event = json.loads(data)
        assert name == event["type"], f"SSE event name {name!r} != data type {event['type']!r}"
        events.append(event)
    return events


def raw_stream(base_url: str, body: dict[str, Any], timeout: float = 120) -> list[dict[str, Any]]:
    """POST with stream=true over plain HTTP; return the validated raw events."""
    with httpx.Client(timeout=timeout) as http:
        reply = http.post(f"{base_url}/responses", json={**body, "stream": True})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(reply.text)
    check_stream(events)
    return events


def assert_error(
    reply: httpx.Response, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


# -- every SDK call in the tests goes through these transports -------------------------


checked = {"replies": 0, "streams": 0}  # what the validating transports checked


def _check_reply(method: str, path: str, body: bytes) -> None:
    checked["replies"] += 1
    data = json.loads(body)
    tail = path.rsplit("/", 1)[-1]
    if tail == "input_items":
        for item in data["data"]:
            if item.get("type") in SPEC_ITEM_TYPES:
                validator("ItemField").validate(item)
    elif data.get("object") == "response" and "output" in data:
        check_response(data)
    elif data.get("object") == "response.compaction":
        # The spec only: the SDK's output union has no user message, yet the hosted API
        # returns the user's messages here (the SDK parses them without validating).
        validator("CompactResource").validate(data)
    del method


class _SSETee:
    """Passes SSE bytes through and validates the whole stream once it has ended."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        self.buffer += chunk
        return chunk

    def close(self) -> None:
        text = self.buffer.decode()
        events = parse_sse(text)
        if events and events[0]["sequence_number"] > 0:
            check_resumed(events)  # a stream resumed from a cursor
        # A consumer that stops early (a disconnect test) leaves a partial stream.
        elif events and events[-1]["type"] in TERMINAL_EVENTS:
            check_stream(events)
            checked["streams"] += 1


TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def _wants_check(request: httpx.Request, response: httpx.Response) -> bool:
    return "/responses" in request.url.path and response.status_code == 200


class _SyncTeeStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, tee: _SSETee) -> None:
        self.inner, self.tee = inner, tee

    def __iter__(self) -> Any:
        for chunk in self.inner:
            yield self.tee.feed(chunk)
        self.tee.close()

    def close(self) -> None:
        self.inner.close()


class _AsyncTeeStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, tee: _SSETee) -> None:
        self.inner, self.tee = inner, tee

    async def __aiter__(self) -> Any:
        async for chunk in self.inner:
            yield self.tee.feed(chunk)
        self.tee.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ValidatingTransport(httpx.HTTPTransport):
    """An httpx transport that validates every Response object and event stream."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not _wants_check(request, response):
            return response
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = _SyncTeeStream(response.stream, _SSETee())
            return response
        body = b"".join(response.stream)  # type: ignore[union-attr]
        response.stream.close()  # type: ignore[union-attr]
        _check_reply(request.method, request.url.path, body)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )


class AsyncValidatingTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not _wants_check(request, response):
            return response
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = _AsyncTeeStream(response.stream, _SSETee())
            return response
        body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        await response.stream.aclose()  # type: ignore[union-attr]
        _check_reply(request.method, request.url.path, body)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )


def sdk_client(base_url: str, **kwargs: Any) -> Any:
    """The official sync client, every reply validated."""
    from openai import OpenAI

    http = httpx.Client(transport=ValidatingTransport(), timeout=120)
    return OpenAI(base_url=base_url, api_key="none", max_retries=0, http_client=http, **kwargs)


def async_sdk_client(base_url: str, **kwargs: Any) -> Any:
    from openai import AsyncOpenAI

    http = httpx.AsyncClient(transport=AsyncValidatingTransport(), timeout=120)
    return AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, http_client=http, **kwargs)
