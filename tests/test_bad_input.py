"""Malformed requests: each gets the OpenAI error envelope and the server keeps serving."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import RunningServer
from wire import assert_error

FN = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
OK = {"model": "scripted", "input": "x"}

# (case id, method, path, body: dict | bytes | None, status, param, code)
CASES: list[tuple[str, str, str, Any, int, str | None, str | None]] = [
    ("malformed-json", "POST", "/responses", b'{"model": "scripted",', 400, None, None),
    ("body-not-object", "POST", "/responses", b"[1, 2]", 400, None, "invalid_type"),
    ("empty-body", "POST", "/responses", b"", 400, None, None),
    (
        "missing-model",
        "POST",
        "/responses",
        {"input": "x"},
        400,
        "model",
        "missing_required_parameter",
    ),
    (
        "unknown-field",
        "POST",
        "/responses",
        {**OK, "temprature": 1},
        400,
        "temprature",
        "unknown_parameter",
    ),
    (
        "model-wrong-type",
        "POST",
        "/responses",
        {"model": 5, "input": "x"},
        400,
        "model",
        "invalid_type",
    ),
    (
        "input-wrong-type",
        "POST",
        "/responses",
        {"model": "scripted", "input": 5},
        400,
        "input",
        "invalid_type",
    ),
    (
        "temperature-string",
        "POST",
        "/responses",
        {**OK, "temperature": "hot"},
        400,
        "temperature",
        "invalid_type",
    ),
    (
        "temperature-too-high",
        "POST",
        "/responses",
        {**OK, "temperature": 3},
        400,
        "temperature",
        None,
    ),
    ("top-p-negative", "POST", "/responses", {**OK, "top_p": -0.1}, 400, "top_p", None),
    (
        "max-output-tokens-small",
        "POST",
        "/responses",
        {**OK, "max_output_tokens": 1},
        400,
        "max_output_tokens",
        None,
    ),
    (
        "max-output-tokens-float",
        "POST",
        "/responses",
        {**OK, "max_output_tokens": 20.5},
        400,
        "max_output_tokens",
        "invalid_type",
    ),
    ("store-string", "POST", "/responses", {**OK, "store": "yes"}, 400, "store", "invalid_type"),
    ("stream-int", "POST", "/responses", {**OK, "stream": 1}, 400, "stream", "invalid_type"),
    (
        "metadata-too-many-keys",
        "POST",
        "/responses",
        {**OK, "metadata": {f"k{i}": "v" for i in range(17)}},
        400,
        "metadata",
        None,
    ),
    (
        "metadata-long-key",
        "POST",
        "/responses",
        {**OK, "metadata": {"k" * 65: "v"}},
        400,
        "metadata",
        None,
    ),
    (
        "metadata-long-value",
        "POST",
        "/responses",
        {**OK, "metadata": {"k": "v" * 513}},
        400,
        "metadata",
        None,
    ),
    (
        "metadata-non-string",
        "POST",
        "/responses",
        {**OK, "metadata": {"k": 1}},
        400,
        "metadata.k",
        "invalid_type",
    ),
    (
        "bad-role",
        "POST",
        "/responses",
        {**OK, "input": [{"role": "robot", "content": "x"}]},
        400,
        "input[0].role",
        "invalid_value",
    ),
    (
        "bad-item-type",
        "POST",
        "/responses",
        {**OK, "input": [{"type": "bogus"}]},
        400,
        "input[0]",
        "invalid_value",
    ),
    (
        "bad-content-part",
        "POST",
        "/responses",
        {**OK, "input": [{"role": "user", "content": [{"type": "input_txt", "text": "x"}]}]},
        400,
        "input[0].content[0]",
        "invalid_value",
    ),
    (
        "call-output-missing-call-id",
        "POST",
        "/responses",
        {**OK, "input": [{"type": "function_call_output", "output": "x"}]},
        400,
        "input[0].call_id",
        "missing_required_parameter",
    ),
    (
        "call-output-unknown-call",
        "POST",
        "/responses",
        {**OK, "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
        400,
        "input",
        None,
    ),
    (
        "tool-missing-name",
        "POST",
        "/responses",
        {**OK, "tools": [{"type": "function"}]},
        400,
        "tools[0].name",
        "missing_required_parameter",
    ),
    (
        "tool-bad-name",
        "POST",
        "/responses",
        {**OK, "tools": [{**FN, "name": "has space"}]},
        400,
        "tools[0].name",
        None,
    ),
    (
        "tool-choice-bad",
        "POST",
        "/responses",
        {**OK, "tool_choice": "sometimes"},
        400,
        "tool_choice",
        "invalid_value",
    ),
    (
        "tool-choice-unknown-fn",
        "POST",
        "/responses",
        {**OK, "tools": [FN], "tool_choice": {"type": "function", "name": "g"}},
        400,
        "tool_choice",
        None,
    ),
    (
        "required-without-tools",
        "POST",
        "/responses",
        {**OK, "tool_choice": "required"},
        400,
        "tool_choice",
        None,
    ),
    (
        "hosted-tool-not-yet",
        "POST",
        "/responses",
        {**OK, "tools": [{"type": "web_search"}]},
        400,
        "tools[0].type",
        "unsupported_value",
    ),
    (
        "truncation-bad",
        "POST",
        "/responses",
        {**OK, "truncation": "sometimes"},
        400,
        "truncation",
        "invalid_value",
    ),
    (
        "include-bad",
        "POST",
        "/responses",
        {**OK, "include": ["everything"]},
        400,
        "include[0]",
        "invalid_value",
    ),
    (
        "top-logprobs-too-many",
        "POST",
        "/responses",
        {**OK, "top_logprobs": 21},
        400,
        "top_logprobs",
        None,
    ),
    (
        "json-schema-missing-name",
        "POST",
        "/responses",
        {**OK, "text": {"format": {"type": "json_schema", "schema": {}}}},
        400,
        "text.format.name",
        None,
    ),
    (
        "unknown-model",
        "POST",
        "/responses",
        {"model": "gpt-nope", "input": "x"},
        404,
        "model",
        "model_not_found",
    ),
    (
        "unknown-previous-response",
        "POST",
        "/responses",
        {**OK, "previous_response_id": "resp_nope"},
        400,
        "previous_response_id",
        None,
    ),
    (
        "background-without-store",
        "POST",
        "/responses",
        {**OK, "background": True, "store": False},
        400,
        "background",
        None,
    ),
    (
        "conversation-with-previous-response",
        "POST",
        "/responses",
        {**OK, "conversation": "conv_x", "previous_response_id": "resp_x"},
        400,
        "conversation",
        "mutually_exclusive_parameters",
    ),
    (
        "unknown-conversation",
        "POST",
        "/responses",
        {**OK, "conversation": {"id": "conv_nope"}},
        404,
        "conversation",
        None,
    ),
    (
        "image-to-text-only-model",
        "POST",
        "/responses",
        {
            "model": "smollm2",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}],
                }
            ],
        },
        400,
        "input",
        None,
    ),
    ("get-unknown-response", "GET", "/responses/resp_nope", None, 404, None, None),
    ("delete-unknown-response", "DELETE", "/responses/resp_nope", None, 404, None, None),
    ("input-items-unknown", "GET", "/responses/resp_nope/input_items", None, 404, None, None),
    (
        "input-items-bad-limit",
        "GET",
        "/responses/resp_nope/input_items?limit=0",
        None,
        400,
        "limit",
        None,
    ),
    (
        "input-items-bad-order",
        "GET",
        "/responses/resp_nope/input_items?order=sideways",
        None,
        400,
        "order",
        None,
    ),
    ("unknown-route", "GET", "/nothing-here", None, 404, None, None),
    ("wrong-method", "PUT", "/responses", b"{}", 405, None, None),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "param", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request(
    server: RunningServer,
    case: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    del case
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    if body is None:
        kwargs = {}
    reply = httpx.request(method, server.base_url + path, timeout=30, **kwargs)
    assert_error(reply, status, param=param, code=code)
    assert httpx.get(f"{server.root_url}/health", timeout=10).status_code == 200


def test_body_over_limit(server: RunningServer) -> None:
    limit = server.settings.max_body_bytes
    big = b'{"model": "scripted", "input": "' + b"x" * (limit + 10) + b'"}'
    reply = httpx.post(f"{server.base_url}/responses", content=big, timeout=60)
    assert_error(reply, 413, code="request_too_large")

    def chunks() -> Any:  # no content-length: the limit is enforced while reading
        for _ in range(limit // (1 << 20) + 2):
            yield b"x" * (1 << 20)

    reply = httpx.post(f"{server.base_url}/responses", content=chunks(), timeout=60)
    assert_error(reply, 413, code="request_too_large")
    assert httpx.get(f"{server.root_url}/health", timeout=10).status_code == 200


def test_case_table_is_large() -> None:
    assert len(CASES) >= 25
