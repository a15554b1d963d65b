"""`reasoning_parser = "think_tags"`: the splitter, the engine wrapper, and end to end."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import pytest

import conftest
from conftest import RunningServer
from responsed.config import load_settings
from responsed.engines.base import (
    Capabilities,
    Delta,
    EngineRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from responsed.engines.reasoning_parser import ThinkTagEngine, ThinkTagSplitter
from scripted_upstream import ScriptedUpstream, Turn
from wire import raw_stream, sdk_client


def split(chunks: list[str], *, starts_in_reasoning: bool = False) -> list[Delta]:
    splitter = ThinkTagSplitter(starts_in_reasoning=starts_in_reasoning)
    out: list[Delta] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out + splitter.flush()


def joined(deltas: list[Delta]) -> tuple[str, str]:
    """(reasoning, answer); also checks that no empty delta is ever emitted."""
    assert all(isinstance(d, TextDelta | ReasoningDelta) and d.text for d in deltas), deltas
    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    answer = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    return reasoning, answer


def random_chunks(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, min(12, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


# -- the splitter ----------------------------------------------------------------------


def test_tags_in_one_chunk() -> None:
    deltas = split(["<think>I should add.</think>\n\nFour."])
    assert deltas == [ReasoningDelta("I should add."), TextDelta("Four.")]


CASES = [
    # (text, starts_in_reasoning, reasoning, answer)
    ("<think>I should add.</think>\n\nFour.", False, "I should add.", "Four."),
    ("no tags at all, <b>bold</b> < thin", False, "", "no tags at all, <b>bold</b> < thin"),
    ("<think>still thinking <think> and </thin", False, "still thinking <think> and </thin", ""),
    ("plan.\n</think>\n \nAnswer", True, "plan.\n", "Answer"),
    ("Hi <think>hmm</think>there", False, "hmm", "Hi there"),
    ("<think>a</think>  \n\t b </think> <think>x", False, "a", "b </think> <think>x"),
    ("<thinking>not a tag <thin", False, "", "<thinking>not a tag <thin"),
    ("<<think>>x</think></think>", False, ">x", "<</think>"),
]


@pytest.mark.parametrize(("text", "starts", "reasoning", "answer"), CASES)
def test_every_chunking_gives_the_same_split(
    text: str, starts: bool, reasoning: str, answer: str
) -> None:
    assert joined(split([text], starts_in_reasoning=starts)) == (reasoning, answer)
    assert joined(split(list(text), starts_in_reasoning=starts)) == (reasoning, answer)
    for at in range(1, len(text)):  # every single cut position
        chunks = [text[:at], text[at:]]
        assert joined(split(chunks, starts_in_reasoning=starts)) == (reasoning, answer), at
    rng = random.Random(text)
    for _ in range(200):
        chunks = random_chunks(text, rng)
        assert joined(split(chunks, starts_in_reasoning=starts)) == (reasoning, answer), chunks


def test_holds_back_only_a_possible_partial_tag() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("Hello <th") == [TextDelta("Hello ")]
    assert splitter.feed("ink>ab</") == [ReasoningDelta("ab")]
    assert splitter.feed("x") == [ReasoningDelta("</x")]
    assert splitter.feed("a </think") == [ReasoningDelta("a ")]
    assert splitter.flush() == [ReasoningDelta("</think")]  # never closed: still reasoning


def test_whitespace_after_close_is_dropped_across_chunks() -> None:
    assert split(["<think>r</think>", "\n", " \n", "\n  A", " b"]) == [
        ReasoningDelta("r"),
        TextDelta("A"),
        TextDelta(" b"),
    ]


def test_unclosed_think_is_all_reasoning() -> None:
    assert split(["Intro. <think>one", " two"]) == [
        TextDelta("Intro. "),
        ReasoningDelta("one"),
        ReasoningDelta(" two"),
    ]


def test_starts_in_reasoning_without_close() -> None:
    assert split(["just ", "thoughts"], starts_in_reasoning=True) == [
        ReasoningDelta("just "),
        ReasoningDelta("thoughts"),
    ]


LOGPROBS = (TokenLogprob("Four", -0.1, tuple(b"Four")),)


def test_logprobs_kept_when_unchanged_dropped_when_split() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("Four", LOGPROBS) == [TextDelta("Four", LOGPROBS)]
    assert splitter.feed(" <th", LOGPROBS) == [TextDelta(" ")]  # "<th" held back
    assert splitter.feed("ink>", LOGPROBS) == []
    assert splitter.feed("x</think> y", LOGPROBS) == [ReasoningDelta("x"), TextDelta("y")]
    assert splitter.feed(" z", LOGPROBS) == [TextDelta(" z", LOGPROBS)]


# -- the engine wrapper ----------------------------------------------------------------


class ScriptedEngine:
    def __init__(self, deltas: list[Delta]) -> None:
        self.deltas = deltas
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def context_window(self) -> int | None:
        return 123

    async def start(self) -> None:
        pass

    async def stream(self, request: EngineRequest) -> AsyncGenerator[Delta, None]:
        try:
            for delta in self.deltas:
                yield delta
        finally:
            self.closed = True

    async def count_tokens(self, request: EngineRequest) -> int | None:
        return 7

    async def aclose(self) -> None:
        pass


async def collect(engine: ThinkTagEngine) -> list[Delta]:
    return [d async for d in engine.stream(EngineRequest(messages=[]))]


async def test_engine_splits_and_estimates_reasoning_tokens() -> None:
    call = ToolCallDelta(0, "call_1", "f", "{}")
    inner = ScriptedEngine(
        [
            TextDelta("<think>abcdef"),
            TextDelta("</think>\nab"),
            call,
            TextDelta("<thi"),  # after </think>: plain answer text
            Finish("tool_calls", Usage(input_tokens=3, output_tokens=10)),
        ]
    )
    engine = ThinkTagEngine(inner)
    assert engine.context_window == 123 and engine.capabilities.reasoning
    assert await engine.count_tokens(EngineRequest(messages=[])) == 7
    deltas = await collect(engine)
    assert deltas[:-1] == [ReasoningDelta("abcdef"), TextDelta("ab"), call, TextDelta("<thi")]
    # 6 reasoning characters out of 6 + 2 + 2 + 4: round(10 * 6 / 14) = 4
    assert deltas[-1] == Finish("tool_calls", Usage(3, 10, reasoning_tokens=4))


async def test_engine_flushes_before_finish_and_keeps_reported_reasoning_tokens() -> None:
    usage = Usage(input_tokens=3, output_tokens=10, reasoning_tokens=9)
    inner = ScriptedEngine([TextDelta("<think>x</th"), Finish("length", usage)])
    deltas = await collect(ThinkTagEngine(inner))
    assert deltas == [ReasoningDelta("x"), ReasoningDelta("</th"), Finish("length", usage)]


async def test_engine_passes_other_deltas_through() -> None:
    usage = Usage(input_tokens=3, output_tokens=10)
    reasoning = ReasoningDelta("from the upstream")  # passes through untouched
    inner = ScriptedEngine([reasoning, TextDelta("plain"), Finish("stop", usage)])
    deltas = await collect(ThinkTagEngine(inner))
    assert deltas[:2] == [reasoning, TextDelta("plain")]
    assert deltas[2] == Finish("stop", Usage(3, 10, reasoning_tokens=round(10 * 17 / 22)))
    inner = ScriptedEngine([TextDelta("plain"), Finish("stop", usage)])
    assert await collect(ThinkTagEngine(inner)) == [TextDelta("plain"), Finish("stop", usage)]


async def test_closing_the_outer_stream_closes_the_inner() -> None:
    inner = ScriptedEngine([TextDelta("<think>a"), TextDelta("b"), Finish("stop")])
    stream = ThinkTagEngine(inner).stream(EngineRequest(messages=[]))
    assert await anext(stream) == ReasoningDelta("a")
    await stream.aclose()
    assert inner.closed


# -- end to end through the server -----------------------------------------------------


@pytest.fixture(scope="module")
def think_server(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[RunningServer]:
    upstream.reset()
    root: Path = tmp_path_factory.mktemp("think")
    config = root / "responsed.toml"
    config.write_text(
        f"""
builtin_model = false

[[models]]
name = "scripted-think"
engine = "openai"
base_url = "{upstream.base_url}"
upstream_model = "scripted"
reasoning_parser = "think_tags"
"""
    )
    settings = load_settings(
        config, host="127.0.0.1", port=conftest.free_port(), data_dir=root / "data"
    )
    running = conftest.start_server(settings)
    yield running
    running.stop()


THINKING = Turn(content="<think>I should add.</think>\n\nFour.", completion_tokens=10)


def test_server_non_streaming(think_server: RunningServer, upstream: ScriptedUpstream) -> None:
    upstream.reset()
    upstream.enqueue(THINKING)
    with sdk_client(think_server.base_url) as sdk:
        response = sdk.responses.create(model="scripted-think", input="2 + 2?")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "I should add."
    assert message.type == "message" and response.output_text == "Four."
    assert response.usage is not None
    assert response.usage.output_tokens == 10
    assert response.usage.output_tokens_details.reasoning_tokens > 0


def test_server_streaming(think_server: RunningServer, upstream: ScriptedUpstream) -> None:
    upstream.reset()
    upstream.enqueue(THINKING)
    events = raw_stream(think_server.base_url, {"model": "scripted-think", "input": "2 + 2?"})
    types = [event["type"] for event in events]
    assert types.index("response.reasoning_text.delta") < types.index("response.output_text.delta")
    reasoning = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
    answer = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert (reasoning, answer) == ("I should add.", "Four.")
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


def test_whitespace_before_a_leading_think_is_dropped() -> None:
    for chunks in (["\n <think>r</think>a"], ["\n", " ", "<th", "ink>r</think>", "a"]):
        deltas = split(chunks)
        assert joined(deltas) == ("r", "a")
        assert isinstance(deltas[0], ReasoningDelta)
    # Ordinary answers keep their leading whitespace.
    assert joined(split(["\n\n", "Hello"])) == ("", "\n\nHello")
