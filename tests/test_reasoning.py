"""Reasoning items: sealed for stateless clients, given back across a function call.

The seed's weather flow against a scripted upstream that streams `reasoning_content`:
the reasoning that led to a call returns to the model (as `reasoning_content` on the
assistant turn that made the call) in the turn that answers the call, and only then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import RunningServer
from scripted_upstream import ScriptedUpstream, Turn
from test_responses_scripted import WEATHER
from wire import check_response, raw_stream

THOUGHT = "The user wants the weather in Osaka, so I call get_weather."
CALL = ("call_osaka", "get_weather", '{"city":"Osaka"}')
ENCRYPTED = ["reasoning.encrypted_content"]


def assistant_turns(scripted: ScriptedUpstream) -> list[dict[str, Any]]:
    return [m for m in scripted.requests[-1]["messages"] if m["role"] == "assistant"]


def test_encrypted_reasoning_round_trip_without_storage(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(reasoning=THOUGHT, tool_calls=[CALL]), Turn(content="Sunny, 25 °C."))
    first = client.responses.create(
        model="scripted",
        input="What is the weather in Osaka?",
        tools=[WEATHER],
        store=False,
        include=ENCRYPTED,
    )
    reasoning, call = first.output
    assert reasoning.type == "reasoning"
    assert call.type == "function_call"
    token = reasoning.encrypted_content
    assert token is not None
    assert token.startswith("gAAAAA")
    assert "Osaka" not in token
    # Stateless: the client sends the whole context back, the reasoning only sealed.
    sealed = {"type": "reasoning", "id": reasoning.id, "summary": [], "encrypted_content": token}
    second = client.responses.create(
        model="scripted",
        input=[
            {"role": "user", "content": "What is the weather in Osaka?"},
            sealed,
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": CALL[0], "output": "sunny, 25 C"},
        ],
        tools=[WEATHER],
        store=False,
        include=ENCRYPTED,
    )
    assert second.output_text == "Sunny, 25 °C."
    (turn,) = assistant_turns(scripted)
    assert turn["reasoning_content"] == THOUGHT
    assert turn["tool_calls"][0]["id"] == CALL[0]

    forged = {**sealed, "encrypted_content": token[:-10] + "A" * 9 + "="}
    foreign = {**sealed, "encrypted_content": _foreign_token()}
    for bad in (forged, foreign):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(
                model="scripted",
                input=[bad, {"role": "user", "content": "x"}],
                store=False,
            )
        assert caught.value.code == "invalid_encrypted_content"


def _foreign_token() -> str:
    from cryptography.fernet import Fernet

    return Fernet(Fernet.generate_key()).encrypt(b'{"kind":"reasoning","text":"x"}').decode()


def test_reasoning_returns_with_previous_response_id_then_is_dropped(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(
        Turn(reasoning=THOUGHT, tool_calls=[CALL]),
        Turn(content="Sunny."),
        Turn(content="You're welcome."),
    )
    first = client.responses.create(
        model="scripted", input="What is the weather in Osaka?", tools=[WEATHER]
    )
    assert first.output[0].type == "reasoning"
    assert first.output[0].encrypted_content is None  # not asked for
    second = client.responses.create(
        model="scripted",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": CALL[0], "output": "sunny"}],
        tools=[WEATHER],
    )
    (turn,) = assistant_turns(scripted)
    assert turn["reasoning_content"] == THOUGHT
    client.responses.create(model="scripted", previous_response_id=second.id, input="Thanks!")
    # The call was answered in an earlier turn: its reasoning is not sent again.
    assert all("reasoning_content" not in m for m in assistant_turns(scripted))


def test_store_false_writes_nothing_to_disk(
    server: RunningServer, client: OpenAI, scripted: ScriptedUpstream
) -> None:
    canary = "canary-7f3a9c-do-not-persist"
    scripted.enqueue(
        Turn(reasoning=f"thinking about {canary}", tool_calls=[CALL]),
        Turn(content=f"answer with {canary}"),
    )
    first = client.responses.create(
        model="scripted",
        input=f"Remember {canary}",
        tools=[WEATHER],
        store=False,
        include=ENCRYPTED,
    )
    client.responses.create(
        model="scripted",
        input=[
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": CALL[0], "output": canary},
        ],
        tools=[WEATHER],
        store=False,
        include=ENCRYPTED,
    )
    # A stored response afterwards forces the database to write (and checkpoint) pages.
    client.responses.create(model="scripted", input="flush")
    data_dir = Path(server.settings.data_dir)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert canary.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_summary_from_the_serving_model(
    server: RunningServer, scripted: ScriptedUpstream, stream: bool
) -> None:
    scripted.enqueue(
        Turn(reasoning="Two plus two: count two more from two, which gives four.", content="4"),
        Turn(content="I counted up from two."),
    )
    body = {
        "model": "scripted",
        "input": "2+2?",
        "reasoning": {"effort": "low", "summary": "concise"},
        "stream": stream,
    }
    if stream:
        events = raw_stream(server.base_url, body)
        kinds = [e["type"] for e in events]
        summary_done = kinds.index("response.reasoning_summary_part.done")
        assert kinds.index("response.reasoning_text.delta") < kinds.index(
            "response.reasoning_summary_part.added"
        )
        assert summary_done < kinds.index("response.output_text.delta")
        final = events[-1]["response"]
    else:
        final = httpx.post(f"{server.base_url}/responses", json=body, timeout=60).json()
        check_response(final)
    reasoning, message = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "I counted up from two."}]
    assert message["content"][0]["text"] == "4"
    assert final["reasoning"] == {"effort": "low", "summary": "concise"}
    summarizing = scripted.requests[-1]["messages"][-1]["content"]
    assert "count two more from two" in summarizing


def test_reasoning_effort_reaches_the_upstreams_knobs(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    client.responses.create(model="scripted-effort", input="x", reasoning={"effort": "high"})
    sent = scripted.requests[-1]
    assert sent["reasoning_effort"] == "high"
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    response = client.responses.create(
        model="scripted-effort", input="x", reasoning={"effort": "none"}
    )
    assert response.reasoning is not None
    assert response.reasoning.effort == "none"
    assert scripted.requests[-1]["chat_template_kwargs"] == {"enable_thinking": False}
    client.responses.create(model="scripted-effort", input="x")
    assert "reasoning_effort" not in scripted.requests[-1]
    assert "chat_template_kwargs" not in scripted.requests[-1]
    # A model with no knob configured is sent nothing (the effort is still echoed).
    echoed = client.responses.create(model="scripted", input="x", reasoning={"effort": "low"})
    assert echoed.reasoning is not None
    assert echoed.reasoning.effort == "low"
    assert "reasoning_effort" not in scripted.requests[-1]


def test_hidden_raw_reasoning_still_summarized_sealed_and_replayed(
    server: RunningServer, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(
        Turn(reasoning=THOUGHT, tool_calls=[CALL]),
        Turn(content="I need the weather, so I ask for it."),
        Turn(content="Sunny."),
    )
    body = {
        "model": "scripted-effort",  # configured reasoning_visibility = "hidden"
        "input": "Weather in Osaka?",
        "tools": [WEATHER],
        "store": False,
        "include": ENCRYPTED,
        "reasoning": {"summary": "auto"},
    }
    events = raw_stream(server.base_url, {**body, "stream": True})
    kinds = {e["type"] for e in events}
    assert "response.reasoning_text.delta" not in kinds
    assert "response.reasoning_summary_text.delta" in kinds
    reasoning, call = events[-1]["response"]["output"]
    assert "content" not in reasoning
    assert reasoning["summary"][0]["text"] == "I need the weather, so I ask for it."
    assert THOUGHT not in str(events)
    follow = {
        **body,
        "input": [
            {"role": "user", "content": "Weather in Osaka?"},
            reasoning,
            call,
            {"type": "function_call_output", "call_id": CALL[0], "output": "sunny"},
        ],
        "reasoning": None,
    }
    reply = httpx.post(f"{server.base_url}/responses", json=follow, timeout=60)
    assert reply.status_code == 200, reply.text
    (turn,) = assistant_turns(scripted)
    assert turn["reasoning_content"] == THOUGHT


def test_builtin_model_reasoning_summary_and_sealing(client: OpenAI) -> None:
    """The built-in model as a reasoning model: its text parsed as reasoning, a summary
    written by it in a second pass, the reasoning sealed."""
    response = client.responses.create(
        model="smollm2-think",
        input="Why is the sky blue?",
        reasoning={"summary": "concise"},
        include=ENCRYPTED,
        max_output_tokens=32,
        temperature=0,
    )
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.content
    assert reasoning.content[0].text.strip()
    assert reasoning.summary
    assert reasoning.summary[0].text.strip()
    assert reasoning.encrypted_content
    assert reasoning.encrypted_content.startswith("gAAAAA")
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == response.usage.output_tokens


def test_reasoning_visibility_server_default(tmp_path: Path) -> None:
    from responsed.config import load_settings

    config = tmp_path / "r.toml"
    config.write_text(
        'reasoning_visibility = "hidden"\n'
        '[[models]]\nname = "a"\nengine = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[[models]]\nname = "b"\nengine = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'reasoning_visibility = "raw"\n'
    )
    settings = load_settings(config, data_dir=tmp_path)
    visibility = {m.name: m.reasoning_visibility for m in settings.models}
    assert visibility == {"smollm2": "hidden", "a": "hidden", "b": "raw"}
