"""Context windows, truncation, token counting, compaction, logprobs and call caps.

The `scripted-window` model is a scripted upstream declared with a 200-token window;
without a tokenizer the server estimates four characters a token plus four tokens a
message (`runtime/truncation.py`), so the accounting below is exact arithmetic.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import RunningServer
from responsed.runtime.context import COMPACTION_PREFIX
from responsed.runtime.summaries import SUMMARY_REQUEST
from responsed.store.sqlite import SQLiteResponseStore
from scripted_upstream import ScriptedUpstream, Turn
from test_responses_scripted import WEATHER
from wire import assert_error, check_response, raw_stream


def sent_record(server: RunningServer, response_id: str) -> dict[str, Any] | None:
    """What the stored response says the model was sent, read from the database."""

    async def read() -> dict[str, Any] | None:
        store = SQLiteResponseStore(server.settings.data_dir / "responsed.sqlite3")
        await store.open()
        try:
            return await store.get_sent("proj_default", response_id)
        finally:
            await store.aclose()

    return asyncio.run(read())


def contents(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"][:1]) for m in messages]


# -- truncation ---------------------------------------------------------------------


def test_truncation_disabled_refuses_before_generating(
    server: RunningServer, scripted: ScriptedUpstream
) -> None:
    body = {"model": "scripted-window", "input": "X" * 800}
    for stream in (False, True):
        reply = httpx.post(f"{server.base_url}/responses", json={**body, "stream": stream})
        error = assert_error(reply, 400, code="context_length_exceeded")
        assert error["param"] == "input"
        assert "200" in error["message"]
    assert scripted.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_truncation_auto_drops_whole_oldest_turns(
    client: OpenAI, server: RunningServer, scripted: ScriptedUpstream, stream: bool
) -> None:
    def turn(text: str, previous: str | None) -> str:
        kwargs: dict[str, Any] = {"previous_response_id": previous} if previous else {}
        if stream:
            with client.responses.stream(
                model="scripted-window",
                input=text,
                truncation="auto",
                instructions="Be brief.",
                **kwargs,
            ) as events:
                return events.get_final_response().id
        return client.responses.create(
            model="scripted-window",
            input=text,
            truncation="auto",
            instructions="Be brief.",
            **kwargs,
        ).id

    # 200 characters = 50 estimated tokens; the answer "ok" adds a message each turn.
    first = turn("A" * 200, None)
    second = turn("B" * 200, first)
    assert contents(scripted.requests[-1]["messages"]) == [
        ("system", "B"),
        ("user", "A"),
        ("assistant", "o"),
        ("user", "B"),
    ]
    assert sent_record(server, second) is None
    third = turn("C" * 200, second)
    # Everything no longer fits under 150 tokens (the window less a quarter for the
    # answer): the oldest turn (user A + its answer) goes, the instructions stay.
    assert contents(scripted.requests[-1]["messages"]) == [
        ("system", "B"),
        ("user", "B"),
        ("assistant", "o"),
        ("user", "C"),
    ]
    assert sent_record(server, third) == {"dropped_items": 2}
    # The stored chain is untouched: input items and the chain still hold everything.
    assert [i.type for i in client.responses.input_items.list(third).data] == ["message"]


def test_truncation_never_splits_a_call_from_its_output(
    client: OpenAI, server: RunningServer, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(tool_calls=[("c1", "get_weather", '{"city":"Paris"}')]))
    first = client.responses.create(
        model="scripted-window", input="A" * 200, tools=[WEATHER], truncation="auto"
    )
    assert first.output[0].type == "function_call"
    second = client.responses.create(
        model="scripted-window",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "c1", "output": "sunny " * 30}],
        tools=[WEATHER],
        truncation="auto",
    )
    third = client.responses.create(
        model="scripted-window",
        previous_response_id=second.id,
        input="C" * 200,
        tools=[WEATHER],
        truncation="auto",
    )
    sent = scripted.requests[-1]["messages"]
    # The call, its output and the answer after it went together with the first turn.
    assert [m["role"] for m in sent] == ["user"]
    assert sent[0]["content"] == "C" * 200
    assert sent_record(server, third.id) == {"dropped_items": 4}


def test_builtin_truncation_auto_fits_a_long_chain(client: OpenAI, server: RunningServer) -> None:
    filler = "The quick brown fox jumps over the lazy dog. " * 150  # ~1,500 tokens
    previous = None
    for n in range(3):
        response = client.responses.create(
            model="smollm2",
            input=f"Note {n}: {filler}",
            previous_response_id=previous,
            max_output_tokens=16,
            temperature=0,
            truncation="auto",
        )
        assert response.status in ("completed", "incomplete")
        previous = response.id
    assert response.usage is not None
    # Three notes no longer fit in 4,096 tokens less the answer's room: the oldest went.
    assert response.usage.input_tokens <= 4096 - 16
    dropped = sent_record(server, response.id)
    assert dropped is not None
    assert dropped["dropped_items"] >= 2
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="smollm2",
            input="again",
            previous_response_id=previous,
            max_output_tokens=16,
        )
    assert caught.value.code == "context_length_exceeded"


# -- token counting -------------------------------------------------------------------


def test_input_tokens_equal_usage_on_the_builtin_model(client: OpenAI) -> None:
    cases: list[dict[str, Any]] = [
        {"input": "Say hello."},
        {"input": "What is the weather in Paris?", "instructions": "Be brief."},
        {"input": "Weather in Paris?", "tools": [WEATHER]},
        {
            "input": "Weather in Paris?",
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"},
        },
        {
            "input": "A fruit, as JSON.",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "fruit",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"],
                        "additionalProperties": False,
                    },
                }
            },
        },
    ]
    previous = None
    for case in cases:
        counted = client.responses.input_tokens.count(model="smollm2", **case)
        assert counted.object == "response.input_tokens"
        response = client.responses.create(
            model="smollm2", max_output_tokens=16, temperature=0, **case
        )
        assert response.usage is not None
        assert counted.input_tokens == response.usage.input_tokens, case
        previous = response.id
    chained = client.responses.input_tokens.count(
        model="smollm2", input="And tomorrow?", previous_response_id=previous
    )
    events = list(
        client.responses.create(
            model="smollm2",
            input="And tomorrow?",
            previous_response_id=previous,
            max_output_tokens=16,
            stream=True,
        )
    )
    # Completed or cut at max_output_tokens (`response.incomplete`): usage either way.
    follow = events[-1].response  # type: ignore[union-attr]
    assert follow.usage is not None
    assert chained.input_tokens == follow.usage.input_tokens


def test_input_tokens_errors(server: RunningServer) -> None:
    url = f"{server.base_url}/responses/input_tokens"
    assert_error(httpx.post(url, json={"input": "x"}), 400, param="model")
    assert_error(httpx.post(url, json={"model": "nope", "input": "x"}), 404, param="model")
    reply = httpx.post(url, json={"model": "smollm2", "previous_response_id": "resp_missing"})
    assert_error(reply, 400, param="previous_response_id")
    # Counting an input too long to run is fine; it is running it that is refused.
    reply = httpx.post(url, json={"model": "smollm2", "input": "word " * 5000})
    assert reply.status_code == 200, reply.text
    assert reply.json()["input_tokens"] > 4096


# -- compaction -----------------------------------------------------------------------


def test_compact_errors(server: RunningServer, scripted: ScriptedUpstream) -> None:
    url = f"{server.base_url}/responses/compact"
    assert_error(httpx.post(url, json={"model": "scripted"}), 400, param="input")
    assert_error(httpx.post(url, json={"model": "nope", "input": "x"}), 404, param="model")
    reply = httpx.post(url, json={"model": "scripted", "previous_response_id": "resp_missing"})
    assert_error(reply, 400, param="previous_response_id")
    assert_error(httpx.post(url, json={"model": "scripted", "store": True}), 400, param="store")
    scripted.enqueue(Turn(error_status=500, error_message="summarizer down"))
    error = assert_error(httpx.post(url, json={"model": "scripted", "input": "x"}), 502)
    assert "summarizer down" in error["message"]
    assert len(scripted.requests) == 1


# The SDK types a compacted window's user messages as assistant output messages and
# warns when it serializes them back; the hosted API returns the same shape.
SDK_SERIALIZER_WARNING = "ignore:Pydantic serializer warnings:UserWarning"


@pytest.mark.filterwarnings(SDK_SERIALIZER_WARNING)
def test_compact_and_continue(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="Hello Ada!"), Turn(content="The user, Ada, likes tea."))
    first = client.responses.create(model="scripted", input="My name is Ada.")
    compacted = client.responses.compact(
        model="scripted", previous_response_id=first.id, input="I like tea."
    )
    assert compacted.object == "response.compaction"
    kinds = [(item.type, getattr(item, "role", None)) for item in compacted.output]
    assert kinds == [("message", "user"), ("message", "user"), ("compaction", None)]
    compaction = compacted.output[-1]
    assert compaction.type == "compaction"
    assert compaction.encrypted_content.startswith("gAAAAA")
    assert "tea" not in compaction.encrypted_content
    assert compacted.usage.input_tokens == 10
    summarizing = scripted.requests[-1]["messages"]
    assert summarizing[-1] == {"role": "user", "content": SUMMARY_REQUEST}
    assert [m["content"] for m in summarizing[:3]] == [
        "My name is Ada.",
        "Hello Ada!",
        "I like tea.",
    ]

    # As users continue: the output items themselves become the next input.
    client.responses.create(
        model="scripted", input=[*compacted.output, {"role": "user", "content": "Name?"}]
    )
    assert scripted.requests[-1]["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "user", "content": "I like tea."},
        {"role": "assistant", "content": COMPACTION_PREFIX + "The user, Ada, likes tea."},
        {"role": "user", "content": "Name?"},
    ]

    token = compaction.encrypted_content
    forged = {"type": "compaction", "encrypted_content": token[:-8] + "AAAAAAA="}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="scripted", input=[forged, {"role": "user", "content": "x"}])
    assert caught.value.code == "invalid_encrypted_content"


@pytest.mark.filterwarnings(SDK_SERIALIZER_WARNING)
def test_compact_on_the_builtin_model(client: OpenAI) -> None:
    first = client.responses.create(
        model="smollm2", input="My favourite colour is green.", max_output_tokens=24
    )
    compacted = client.responses.compact(model="smollm2", previous_response_id=first.id)
    assert compacted.output[-1].type == "compaction"
    assert compacted.usage.output_tokens > 0
    follow = client.responses.create(
        model="smollm2",
        input=[*compacted.output, {"role": "user", "content": "What is my favourite colour?"}],
        max_output_tokens=24,
    )
    assert follow.status in ("completed", "incomplete")
    assert follow.output_text


# -- logprobs and call caps -------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_from_an_upstream(
    server: RunningServer, scripted: ScriptedUpstream, stream: bool
) -> None:
    scripted.enqueue(Turn(content="Paris is lovely"))
    body = {
        "model": "scripted",
        "input": "x",
        "top_logprobs": 2,
        "include": ["message.output_text.logprobs"],
        "stream": stream,
    }
    if stream:
        events = raw_stream(server.base_url, body)
        deltas = [e for e in events if e["type"] == "response.output_text.delta"]
        assert [e["logprobs"][0]["token"] for e in deltas] == ["Paris ", "is ", "lovely"]
        final = events[-1]["response"]
    else:
        reply = httpx.post(f"{server.base_url}/responses", json=body)
        final = reply.json()
        check_response(final)
    part = final["output"][0]["content"][0]
    assert [lp["token"] for lp in part["logprobs"]] == ["Paris ", "is ", "lovely"]
    assert all(len(lp["top_logprobs"]) == 2 for lp in part["logprobs"])
    assert part["logprobs"][0]["bytes"] == list(b"Paris ")
    assert final["top_logprobs"] == 2
    sent = scripted.requests[-1]
    assert sent["logprobs"] is True
    assert sent["top_logprobs"] == 2
    # Without the include, none are asked for.
    scripted.enqueue(Turn(content="plain"))
    reply = httpx.post(f"{server.base_url}/responses", json={"model": "scripted", "input": "x"})
    assert reply.json()["output"][0]["content"][0]["logprobs"] == []
    assert "logprobs" not in scripted.requests[-1]


def test_builtin_logprobs(server: RunningServer) -> None:
    body = {
        "model": "smollm2",
        "input": "Count: one, two,",
        "top_logprobs": 3,
        "include": ["message.output_text.logprobs"],
        "max_output_tokens": 16,
        "temperature": 0,
    }
    events = raw_stream(server.base_url, body)
    part = events[-1]["response"]["output"][0]["content"][0]
    assert part["logprobs"], part
    assert "".join(lp["token"] for lp in part["logprobs"]) == part["text"]
    for lp in part["logprobs"]:
        assert lp["logprob"] <= 0
        assert len(lp["top_logprobs"]) == 3
        # Greedy decoding picks the most likely token.
        assert lp["top_logprobs"][0]["token"] == lp["token"]
    streamed = [
        lp for e in events if e["type"] == "response.output_text.delta" for lp in e["logprobs"]
    ]
    assert streamed == part["logprobs"]


def test_max_tool_calls_and_parallel_false(
    server: RunningServer, scripted: ScriptedUpstream
) -> None:
    calls = [(f"c{n}", "get_weather", f'{{"city":"{c}"}}') for n, c in enumerate("ABC")]
    body = {"model": "scripted", "input": "A, B and C", "tools": [WEATHER]}
    scripted.enqueue(Turn(tool_calls=calls))
    final = raw_stream(server.base_url, {**body, "max_tool_calls": 2})[-1]["response"]
    assert [o["call_id"] for o in final["output"]] == ["c0", "c1"]
    assert final["max_tool_calls"] == 2
    scripted.enqueue(Turn(tool_calls=calls))
    reply = httpx.post(f"{server.base_url}/responses", json={**body, "parallel_tool_calls": False})
    final = reply.json()
    check_response(final)
    assert [o["call_id"] for o in final["output"]] == ["c0"]
    assert final["parallel_tool_calls"] is False
    assert scripted.requests[-1]["parallel_tool_calls"] is False


# -- structured output from upstreams ----------------------------------------------------


CITY_FORMAT = {
    "type": "json_schema",
    "name": "city",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["name", "population"],
        "additionalProperties": False,
    },
}


def test_upstream_output_that_breaks_a_strict_schema_fails(
    server: RunningServer, scripted: ScriptedUpstream
) -> None:
    body = {"model": "scripted", "input": "a city", "text": {"format": CITY_FORMAT}}
    scripted.enqueue(Turn(content='{"name": "Paris", "population": 2102650}'))
    good = httpx.post(f"{server.base_url}/responses", json=body).json()
    assert good["status"] == "completed"
    assert scripted.requests[-1]["response_format"]["json_schema"]["name"] == "city"

    scripted.enqueue(Turn(content='{"name": "Paris"}'))
    reply = httpx.post(f"{server.base_url}/responses", json=body)
    error = assert_error(reply, 502)
    assert "city" in error["message"]
    assert "population" in error["message"]

    scripted.enqueue(Turn(content="Paris, about two million"))
    events = raw_stream(server.base_url, {**body, "stream": True})
    assert events[-1]["type"] == "response.failed"
    assert "does not match the JSON schema 'city'" in events[-1]["response"]["error"]["message"]

    # Not strict: whatever the model wrote is returned.
    loose = {**CITY_FORMAT, "strict": False}
    scripted.enqueue(Turn(content="Paris, about two million"))
    reply = httpx.post(
        f"{server.base_url}/responses", json={**body, "text": {"format": loose}}
    ).json()
    assert reply["status"] == "completed"
    assert reply["output"][0]["content"][0]["text"] == "Paris, about two million"
