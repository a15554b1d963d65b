"""Responses over a real OpenAI-compatible server: llama-cpp-python's, with the GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RunningServer, free_port, start_server
from responsed.config import load_settings
from wire import check_sdk_response, raw_stream, sdk_client


@pytest.fixture(scope="module")
def gateway(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root: Path = tmp_path_factory.mktemp("gateway")
    config = root / "c.toml"
    config.write_text(
        f'builtin_model = false\n[[models]]\nname = "local"\nengine = "openai"\n'
        f'base_url = "{llama_server}"\nupstream_model = "smollm2"\n'
    )
    running = start_server(
        load_settings(config, host="127.0.0.1", port=free_port(), data_dir=root / "d")
    )
    yield running
    running.stop()


def test_text_stream_and_chain(gateway: RunningServer) -> None:
    events = raw_stream(
        gateway.base_url,
        {"model": "local", "input": "Name a fruit.", "max_output_tokens": 16, "temperature": 0},
    )
    first = events[-1]["response"]
    assert first["output"][0]["content"][0]["text"].strip()
    with sdk_client(gateway.base_url) as client:
        second = client.responses.create(
            model="local",
            input="And a vegetable?",
            previous_response_id=first["id"],
            max_output_tokens=16,
        )
        check_sdk_response(second)
        assert second.output_text.strip()
        assert client.responses.retrieve(second.id).id == second.id
        assert [m.id for m in client.models.list()] == ["local"]


def test_function_call_mapped_both_ways(gateway: RunningServer) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    with sdk_client(gateway.base_url) as client:
        response = client.responses.create(
            model="local",
            input="Weather in Paris?",
            tools=[tool],  # type: ignore[list-item]
            tool_choice={"type": "function", "name": "get_weather"},
            max_output_tokens=64,
        )
        calls = [o for o in response.output if o.type == "function_call"]
        assert calls, response.output
        assert calls[0].name == "get_weather"
        follow = client.responses.create(
            model="local",
            previous_response_id=response.id,
            max_output_tokens=16,
            input=[
                {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}
            ],
        )
        assert follow.status in ("completed", "incomplete")
