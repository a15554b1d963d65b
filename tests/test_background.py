"""Background mode: queued → in_progress → terminal, resumable streams, cancellation."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import RunningServer
from responsed.testing import assert_valid_event_stream
from scripted_upstream import ScriptedUpstream, Turn
from wire import assert_error, check_stream, parse_sse

TERMINAL = ("completed", "incomplete", "failed", "cancelled")


def wait_terminal(client: OpenAI, response_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        response = client.responses.retrieve(response_id)
        if not seen or seen[-1] != response.status:
            seen.append(response.status)
        if response.status in TERMINAL:
            return response, seen
        assert time.monotonic() < deadline, f"still {response.status} after {timeout} s"
        time.sleep(0.05)


def replay(server: RunningServer, response_id: str, after: int | None = None) -> list[Any]:
    """GET …?stream=true[&starting_after=N] read raw, to the end."""
    params: dict[str, Any] = {"stream": "true"}
    if after is not None:
        params["starting_after"] = after
    with httpx.Client(timeout=60) as http:
        reply = http.get(f"{server.base_url}/responses/{response_id}", params=params)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return parse_sse(reply.text)


def test_background_runs_to_completion(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="the answer is forty-two", delay=0.05))
    created = client.responses.create(model="scripted", input="q", background=True)
    assert created.status == "queued"
    assert created.background is True
    assert created.output == []
    done, seen = wait_terminal(client, created.id)
    assert done.status == "completed"
    assert done.output_text == "the answer is forty-two"
    assert seen[-1] == "completed"
    assert set(seen) <= {"queued", "in_progress", "completed"}
    # The stored input is there, as for a foreground response.
    items = client.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"]


def test_background_requires_store(server: RunningServer) -> None:
    body = {"model": "scripted", "input": "q", "background": True, "store": False}
    reply = httpx.post(f"{server.base_url}/responses", json=body, timeout=30)
    assert_error(reply, 400, param="background")


def test_background_stream_replays_identically(
    client: OpenAI, server: RunningServer, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(content="one two three four five six seven", delay=0.02))
    body = {"model": "scripted", "input": "q", "background": True, "stream": True}
    with httpx.Client(timeout=60) as http:
        reply = http.post(f"{server.base_url}/responses", json=body)
    live = parse_sse(reply.text)
    check_stream(live)
    kinds = [e["type"] for e in live]
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert live[0]["response"]["status"] == "queued"
    assert kinds[-1] == "response.completed"
    response_id = live[0]["response"]["id"]
    assert replay(server, response_id) == live  # the whole log, as first sent
    for cursor in (0, 1, 5, len(live) - 2, len(live) - 1):
        assert replay(server, response_id, cursor) == live[cursor + 1 :], cursor
    # The SDK's own resume call, twice (any number of times).
    for _ in range(2):
        resumed = client.responses.retrieve(response_id, stream=True, starting_after=3)
        assert [e.sequence_number for e in resumed] == list(range(4, len(live)))


def test_resume_follows_a_live_response(
    client: OpenAI, server: RunningServer, scripted: ScriptedUpstream
) -> None:
    """A second connection joins mid-way, gets the past, then the live events."""
    scripted.enqueue(Turn(content="a b c d e f g h i j k l m n o p", delay=0.05))
    created = client.responses.create(model="scripted", input="q", background=True)
    deadline = time.monotonic() + 30
    while client.responses.retrieve(created.id).status == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    events = replay(server, created.id)  # joins while it runs; ends at the terminal event
    check_stream(events)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == (
        "a b c d e f g h i j k l m n o p"
    )


def test_cancel_stops_generation_and_keeps_partial_output(
    client: OpenAI, server: RunningServer, scripted: ScriptedUpstream
) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    scripted.enqueue(Turn(content=words, delay=0.05))
    disconnects = scripted.disconnects
    created = client.responses.create(model="scripted", input="q", background=True)
    deadline = time.monotonic() + 30
    while True:  # wait for some text to be produced
        events = replay_until(server, created.id, "response.output_text.delta", 3)
        if events:
            break
        assert time.monotonic() < deadline
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    text = cancelled.output[0].content[0].text  # type: ignore[union-attr]
    assert text and words.startswith(text) and text != words
    assert cancelled.output[0].status == "incomplete"  # type: ignore[union-attr]
    # The engine stopped: the upstream saw the disconnect, nothing more is produced.
    deadline = time.monotonic() + 10
    while scripted.disconnects == disconnects:
        assert time.monotonic() < deadline, "the upstream stream was never closed"
        time.sleep(0.02)
    time.sleep(0.3)
    again = client.responses.cancel(created.id)  # idempotent: the same object
    assert again.model_dump() == cancelled.model_dump()
    assert client.responses.retrieve(created.id).model_dump() == cancelled.model_dump()
    log = replay(server, created.id)
    assert_valid_event_stream(log, cancelled=True)
    done_item = [e for e in log if e["type"] == "response.output_item.done"][-1]["item"]
    assert done_item["content"][0]["text"] == text


def replay_until(server: RunningServer, response_id: str, kind: str, count: int) -> list[Any]:
    """Read the live stream until `count` events of `kind`, then hang up."""
    seen: list[Any] = []
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "GET", f"{server.base_url}/responses/{response_id}", params={"stream": "true"}
        ) as reply,
    ):
        buffer = ""
        for chunk in reply.iter_text():
            buffer += chunk
            *blocks, buffer = buffer.split("\n\n")
            for block in blocks:
                seen.extend(parse_sse(block + "\n\n"))
            if sum(1 for e in seen if e["type"] == kind) >= count:
                return seen
    return []


def test_cancel_queued_response(client: OpenAI, scripted: ScriptedUpstream) -> None:
    """With one background slot, the second job waits queued; cancelling it never runs it."""
    scripted.enqueue(Turn(content="first " * 10, delay=0.05), Turn(content="never"))
    first = client.responses.create(model="scripted-serial", input="a", background=True)
    second = client.responses.create(model="scripted-serial", input="b", background=True)
    assert client.responses.retrieve(second.id).status == "queued"
    cancelled = client.responses.cancel(second.id)
    assert cancelled.status == "cancelled"
    assert cancelled.output == []
    done, _ = wait_terminal(client, first.id)
    assert done.status == "completed"
    assert len(scripted.requests) == 1  # the cancelled one never reached the model


def test_cancel_finished_and_foreground_responses(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(content="quick"))
    created = client.responses.create(model="scripted", input="q", background=True)
    done, _ = wait_terminal(client, created.id)
    assert client.responses.cancel(created.id).model_dump() == done.model_dump()
    foreground = client.responses.create(model="scripted", input="q")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_does_not_exist")


def test_stream_of_foreground_response_refused(server: RunningServer, client: OpenAI) -> None:
    foreground = client.responses.create(model="scripted", input="q")
    reply = httpx.get(
        f"{server.base_url}/responses/{foreground.id}", params={"stream": "true"}, timeout=30
    )
    assert_error(reply, 400, param="stream")


def test_background_failure_is_stored(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(error_status=500))
    created = client.responses.create(model="scripted", input="q", background=True)
    done, _ = wait_terminal(client, created.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "server_error"


def test_background_on_the_builtin_model(client: OpenAI, server: RunningServer) -> None:
    created = client.responses.create(
        model="smollm2", input="Say hi.", background=True, max_output_tokens=16, temperature=0
    )
    done, _ = wait_terminal(client, created.id, timeout=120)
    assert done.status in ("completed", "incomplete")
    assert done.output_text
    check_stream(replay(server, created.id))


def test_disconnect_never_stops_a_background_response(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    text = " ".join(f"t{i}" for i in range(40))
    scripted.enqueue(Turn(content=text, delay=0.02))
    with client.responses.create(
        model="scripted", input="q", background=True, stream=True
    ) as stream:
        for event in stream:
            if event.type == "response.created":
                response_id = event.response.id
            if event.sequence_number >= 4:
                break  # the client hangs up mid-stream
    done, _ = wait_terminal(client, response_id)
    assert done.status == "completed"
    assert done.output_text == text


def test_cancel_on_the_builtin_model_frees_the_engine(
    client: OpenAI, server: RunningServer
) -> None:
    created = client.responses.create(
        model="smollm2",
        input="Write a very long story about a lighthouse keeper.",
        background=True,
        max_output_tokens=2000,
    )
    replay_until(server, created.id, "response.output_text.delta", 5)
    started = time.monotonic()
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert time.monotonic() - started < 5, "cancel did not stop the model promptly"
    partial = cancelled.output[-1]
    assert partial.status == "incomplete"
    assert cancelled.usage is None or cancelled.usage.output_tokens < 2000
    # The model is free again at once: a short request is served without waiting.
    started = time.monotonic()
    quick = client.responses.create(
        model="smollm2", input="Hi", max_output_tokens=16, temperature=0, store=False
    )
    assert quick.status in ("completed", "incomplete")
    assert time.monotonic() - started < 30
    assert client.responses.retrieve(created.id).model_dump() == cancelled.model_dump()


def test_deleting_a_running_response_stops_it_for_good(
    client: OpenAI, server: RunningServer, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(content=" ".join(f"d{i}" for i in range(200)), delay=0.05))
    disconnects = scripted.disconnects
    created = client.responses.create(model="scripted", input="q", background=True)
    replay_until(server, created.id, "response.output_text.delta", 2)
    assert client.responses.delete(created.id) is None
    deadline = time.monotonic() + 10
    while scripted.disconnects == disconnects:
        assert time.monotonic() < deadline, "generation went on after the delete"
        time.sleep(0.02)
    time.sleep(0.3)
    with pytest.raises(openai.NotFoundError):  # not brought back by the run's end
        client.responses.retrieve(created.id)
