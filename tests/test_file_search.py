"""The file_search tool: the model searches, the server runs the search, the answer
cites the files; exact loops with the scripted upstream, once on the built-in model."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from scripted_upstream import ScriptedUpstream, Turn
from test_file_inputs import make_pdf

FREEDONIA = (
    "Freedonia is a small country. Its capital city is Fredville, founded in 1822 on the "
    "banks of the river Fred. The national dish of Freedonia is a stew of lentils."
)
SYLVANIA = "Sylvania is Freedonia's neighbour. Its capital is Sylvan Heights, in the hills."


@pytest.fixture(scope="module")
def store(client_module: OpenAI) -> dict[str, Any]:
    client = client_module
    files = {}
    vector_store = client.vector_stores.create(name="atlas")
    # The seed's flow: a PDF (purpose "assistants") and a text file in one store.
    uploads = {
        "freedonia.pdf": (make_pdf(FREEDONIA.split(". ")), "application/pdf"),
        "sylvania.txt": (SYLVANIA.encode(), "text/plain"),
    }
    for name, (data, mime) in uploads.items():
        uploaded = client.files.create(file=(name, data, mime), purpose="assistants")
        done = client.vector_stores.files.create_and_poll(
            vector_store_id=vector_store.id, file_id=uploaded.id, poll_interval_ms=50
        )
        assert done.status == "completed", done.last_error
        files[name] = uploaded.id
    return {"id": vector_store.id, "files": files}


@pytest.fixture(scope="module")
def client_module(server: Any) -> Any:
    from wire import sdk_client

    with sdk_client(server.base_url) as sdk:
        yield sdk


def file_search(store: dict[str, Any], **extra: Any) -> list[Any]:
    return [{"type": "file_search", "vector_store_ids": [store["id"]], **extra}]


def search_call(query: str) -> Turn:
    return Turn(tool_calls=[("call_fs1", "file_search", json.dumps({"queries": [query]}))])


def test_search_then_cited_answer(
    client: OpenAI, scripted: ScriptedUpstream, store: dict[str, Any]
) -> None:
    scripted.enqueue(search_call("capital of Freedonia"), Turn(content="It is Fredville [1]."))
    response = client.responses.create(
        model="scripted",
        input="What is the capital of Freedonia?",
        tools=file_search(store),  # type: ignore[arg-type]
        include=["file_search_call.results"],
    )
    call, message = response.output
    assert call.type == "file_search_call"
    assert call.status == "completed"
    assert call.queries == ["capital of Freedonia"]
    assert call.results and call.results[0].file_id == store["files"]["freedonia.pdf"]
    assert call.results[0].filename == "freedonia.pdf"
    assert 0 <= call.results[0].score <= 1
    assert "Fredville" in (call.results[0].text or "")
    assert message.type == "message"
    text = message.content[0]
    assert text.text == "It is Fredville."  # type: ignore[union-attr]
    [annotation] = text.annotations  # type: ignore[union-attr]
    assert annotation.type == "file_citation"
    assert annotation.file_id == store["files"]["freedonia.pdf"]
    assert annotation.filename == "freedonia.pdf"
    assert annotation.index == len("It is Fredville")
    # What the model was given: the tool offered, then the numbered results to read.
    first, second = scripted.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["file_search"]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_fs1"
    assert "[1] freedonia.pdf:" in tool_message["content"]
    assert "Freedonia is a small country" in tool_message["content"]
    assert response.usage is not None
    assert response.usage.input_tokens == 20 and response.usage.output_tokens == 10  # 2 rounds


def test_results_only_when_included_and_streaming_events(
    client: OpenAI, scripted: ScriptedUpstream, store: dict[str, Any]
) -> None:
    scripted.enqueue(search_call("Sylvania capital"), Turn(content="Sylvan Heights [1][2]."))
    with client.responses.stream(
        model="scripted",
        input="Capital of Sylvania?",
        tools=file_search(store),  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert (
        kinds.index("response.file_search_call.in_progress")
        < kinds.index("response.file_search_call.searching")
        < kinds.index("response.file_search_call.completed")
    )
    assert kinds.count("response.output_text.annotation.added") == 2
    call = final.output[0]
    assert call.type == "file_search_call" and call.results is None
    annotations = final.output[1].content[0].annotations  # type: ignore[union-attr]
    assert [a.index for a in annotations] == [len("Sylvan Heights")] * 2


def test_forced_search_and_no_citation_fallback(
    client: OpenAI, scripted: ScriptedUpstream, store: dict[str, Any]
) -> None:
    scripted.enqueue(search_call("Freedonia dish"), Turn(content="A lentil stew."))
    response = client.responses.create(
        model="scripted",
        input="What do they eat in Freedonia?",
        tools=file_search(store, max_num_results=1),  # type: ignore[arg-type]
        tool_choice={"type": "file_search"},
    )
    assert scripted.requests[-2]["tool_choice"] == {
        "type": "function",
        "function": {"name": "file_search"},
    }
    assert scripted.requests[-1]["tool_choice"] == "auto"
    tool_message = scripted.requests[-1]["messages"][-1]["content"]
    assert "[1]" in tool_message and "[2]" not in tool_message  # max_num_results
    # The model cited nothing: its best source is cited at the end of the answer.
    [annotation] = response.output[1].content[0].annotations  # type: ignore[union-attr]
    assert annotation.index == len("A lentil stew.")


def test_chained_turn_sees_the_search(
    client: OpenAI, scripted: ScriptedUpstream, store: dict[str, Any]
) -> None:
    scripted.enqueue(search_call("Fredville founded"), Turn(content="In 1822 [1]."))
    first = client.responses.create(
        model="scripted",
        input="When was Fredville founded?",
        tools=file_search(store),  # type: ignore[arg-type]
        include=["file_search_call.results"],
    )
    scripted.enqueue(Turn(content="On the river Fred."))
    client.responses.create(model="scripted", input="Where?", previous_response_id=first.id)
    roles = [m["role"] for m in scripted.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert "1822" in scripted.requests[-1]["messages"][2]["content"]


def test_bad_file_search_tools(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(
            model="scripted",
            input="x",
            tools=[{"type": "file_search"}],  # type: ignore[list-item]
        )
    assert error.value.body["param"] == "tools[0].vector_store_ids"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            model="scripted",
            input="x",
            tools=[{"type": "file_search", "vector_store_ids": ["vs_nope"]}],
        )


def test_file_search_on_the_builtin_model(client: OpenAI, store: dict[str, Any]) -> None:
    response = client.responses.create(
        model="smollm2",
        input="What is the capital of Freedonia?",
        tools=file_search(store),  # type: ignore[arg-type]
        tool_choice={"type": "file_search"},
        include=["file_search_call.results"],
        max_output_tokens=48,
        temperature=0,
    )
    call = response.output[0]
    assert call.type == "file_search_call", response.output
    assert call.queries and call.results
    message = response.output[-1]
    assert message.type == "message"
    annotations = message.content[0].annotations  # type: ignore[union-attr]
    assert annotations and annotations[0].file_id in store["files"].values()
