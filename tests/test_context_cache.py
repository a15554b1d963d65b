"""The context cache: extension, LRU bound, eviction; and chains across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import RunningServer, free_port, start_server, write_config
from responsed.config import load_settings
from responsed.runtime.context_cache import Context, ContextCache
from scripted_upstream import ScriptedUpstream, Turn
from wire import sdk_client


def message(role: str, text: str, n: int) -> dict[str, object]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": role,
        "content": [{"type": kind, "text": text}],
    }


def test_extend_matches_rendering_everything_at_once() -> None:
    call = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    output = {"id": "fco_1", "type": "function_call_output", "call_id": "c1", "output": "42"}
    turns = [
        [message("user", "q", 1)],
        [message("assistant", "let me check", 2), call],
        [output, message("assistant", "42", 3)],
    ]
    step = Context()
    for turn in turns:
        step = step.extend(turn)
    whole = Context.of([item for turn in turns for item in turn])
    assert step.messages == whole.messages
    assert step.call_ids == whole.call_ids
    assert step.call_ids == frozenset({"c1"})
    # The function call joined the assistant message of the previous turn, by copy.
    assert step.messages[1]["tool_calls"][0]["id"] == "c1"
    assert "tool_calls" not in Context.of(turns[0] + turns[1][:1]).messages[1]


def test_lru_bound_parent_drop_and_evict() -> None:
    small = Context.of([message("user", "a", 1), message("user", "b", 2)])
    cache = ContextCache(max_bytes=small.size * 2)
    cache.put("p", "r1", small)
    cache.put("p", "r2", small)
    assert cache.get("p", "r1") is small  # r1 is now the most recent
    cache.put("p", "r3", small)  # over budget: the least recent (r2) goes
    assert cache.get("p", "r2") is None
    assert cache.get("p", "r1") is small
    assert cache.bytes == small.size * 2
    assert cache.get("other-project", "r1") is None
    cache.put("p", "r4", small, parent="r3")  # a chain keeps one entry: its tip
    assert cache.get("p", "r3") is None
    assert cache.get("p", "r4") is small
    cache.evict("p", "r1")
    assert cache.get("p", "r1") is None
    big = Context.of([message("user", "x" * 1000, n) for n in range(6)])
    cache.put("p", "big", big)
    assert cache.get("p", "big") is None  # larger than the whole cache: not kept


def test_size_grows_with_the_turn_not_the_chain() -> None:
    context = Context()
    sizes = []
    for n in range(50):
        before = context.size
        context = context.extend(
            [message("user", "hello", 2 * n), message("assistant", "hi", 2 * n + 1)]
        )
        sizes.append(context.size - before)
    assert len(set(sizes)) == 1  # every turn adds the same estimate
    assert len(context.messages) == 100


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path


def test_chain_continues_after_restart(data_root: Path, upstream: ScriptedUpstream) -> None:
    upstream.reset()
    config = write_config(data_root / "c.toml", upstream.base_url, "http://127.0.0.1:9/v1")

    def boot() -> RunningServer:
        settings = load_settings(
            config, host="127.0.0.1", port=free_port(), data_dir=data_root / "data"
        )
        return start_server(settings)

    first_server = boot()
    upstream.enqueue(Turn(content="A1"), Turn(content="A2"), Turn(content="A3"))
    with sdk_client(first_server.base_url) as client:
        one = client.responses.create(model="scripted", input="Q1")
        two = client.responses.create(model="scripted", input="Q2", previous_response_id=one.id)
        client.responses.create(model="scripted", input="Q3", previous_response_id=two.id)
    warm = upstream.requests[-1]["messages"]
    first_server.stop()

    second_server = boot()
    try:
        upstream.enqueue(Turn(content="A3 again"))
        with sdk_client(second_server.base_url) as client:
            again = client.responses.create(
                model="scripted", input="Q3", previous_response_id=two.id
            )
            assert again.output_text == "A3 again"
            assert client.responses.retrieve(one.id).output_text == "A1"
    finally:
        second_server.stop()
    assert upstream.requests[-1]["messages"] == warm  # cold rebuild == cached context
