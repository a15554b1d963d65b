"""Prompt (KV) cache of the built-in engine: second-turn time to first token, one run.

Starts `responsed serve` on 127.0.0.1 with the built-in GGUF loaded twice, as model
`kv-on` (prompt cache on, the default) and `kv-off` (`prompt_cache = false`), one
instance each. Builds a ~2,000-token `previous_response_id` chain (instructions plus
several long user turns) on `kv-on`, then, in alternating rounds, sends each model an
unrelated request (so the instance's live KV cache holds something else) followed by a
new turn on top of the chain (`store: false`, a different question each round), and
times that turn's first `response.output_text.delta` through the `openai` SDK. With the
cache, the turn loads the chain's saved state and evaluates only its new tokens;
without, it evaluates the whole prompt. Then, in process, times saving and loading a
state of the same length.

    .venv/bin/python bench/kv_cache.py [--rounds 3] [--turns 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from responsed.config import builtin_model_path

INSTRUCTIONS = (
    "You are a patient librarian who helps readers plan what to read next. "
    "Answer in one or two sentences, mention at most one book, and never invent authors. "
) * 6
WORDS = [
    "river",
    "mountain",
    "story",
    "chapter",
    "reader",
    "winter",
    "garden",
    "letter",
    "history",
    "science",
    "city",
    "journey",
    "market",
    "harbor",
    "lantern",
    "forest",
    "island",
    "village",
    "music",
    "painter",
    "engine",
    "bridge",
    "summer",
    "autumn",
    "window",
    "library",
    "morning",
    "evening",
    "courage",
    "memory",
    "promise",
    "friend",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def paragraph(rng: random.Random, words: int) -> str:
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
        sentences.append(sentence.capitalize() + ".")
    return " ".join(sentences)


def start_server(data: str, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    gguf = builtin_model_path()
    config = Path(data) / "config.toml"
    model = f'engine = "llamacpp"\npath = "{gguf}"\nn_ctx = 4096\nn_threads = {threads}\n'
    config.write_text(
        "builtin_model = false\n"
        f'[[models]]\nname = "kv-on"\n{model}'
        f'[[models]]\nname = "kv-off"\n{model}prompt_cache = false\n'
    )
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "responsed"),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data,
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.terminate()
            raise SystemExit("responsed did not start")
        time.sleep(0.2)


def build_chain(client: OpenAI, turns: int) -> tuple[str, int]:
    rng = random.Random(7)
    previous: str | None = None
    tokens = 0
    for turn in range(turns):
        text = f"Turn {turn + 1}. Here are my notes: {paragraph(rng, 270)} What should I read?"
        response = client.responses.create(
            model="kv-on",
            instructions=INSTRUCTIONS,
            input=text,
            previous_response_id=previous,
            max_output_tokens=24,
            temperature=0,
        )
        previous = response.id
        assert response.usage is not None
        tokens = response.usage.input_tokens + response.usage.output_tokens
    assert previous is not None
    return previous, tokens


def timed_turn(client: OpenAI, model: str, tip: str, question: str) -> tuple[float, Any]:
    start = time.perf_counter()
    first: float | None = None
    usage: Any = None
    stream = client.responses.create(
        model=model,
        instructions=INSTRUCTIONS,
        input=question,
        previous_response_id=tip,
        max_output_tokens=16,
        temperature=0,
        store=False,
        stream=True,
    )
    for event in stream:
        if event.type == "response.output_text.delta" and first is None:
            first = time.perf_counter() - start
        elif event.type in ("response.completed", "response.incomplete"):
            usage = event.response.usage
    if first is None:
        raise SystemExit(f"{model}: no output text")
    return first, usage


def unrelated(client: OpenAI, model: str, n: int) -> None:
    client.responses.create(
        model=model,
        input=f"Pick a number between {n} and {n + 50}.",
        max_output_tokens=16,
        temperature=0,
        store=False,
    )


def state_costs(tokens: int, threads: int, reps: int = 5) -> dict[str, float]:
    """Prefill, save and load of a `tokens`-long sequence, in process."""
    import llama_cpp

    from responsed.engines.llamacpp_kvcache import CachedState, restore_state, snapshot_state

    llama = llama_cpp.Llama(
        model_path=str(builtin_model_path()),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    try:
        text = paragraph(random.Random(3), tokens)
        ids = llama.tokenize(text.encode(), add_bos=False)[:tokens]
        start = time.perf_counter()
        llama.eval(ids)
        prefill = time.perf_counter() - start
        saves: list[float] = []
        loads: list[float] = []
        state = None
        for _ in range(reps):
            start = time.perf_counter()
            state = snapshot_state(llama)
            saves.append(time.perf_counter() - start)
            assert state is not None
            entry = CachedState(None, llama.input_ids[: llama.n_tokens].copy(), state)
            start = time.perf_counter()
            assert restore_state(llama, entry)
            loads.append(time.perf_counter() - start)
        assert state is not None
        return {
            "tokens": len(ids),
            "bytes": state.nbytes,
            "prefill_s": prefill,
            "save_s": statistics.median(saves),
            "load_s": statistics.median(loads),
        }
    finally:
        llama.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    data = tempfile.mkdtemp()
    server, base = start_server(data, args.threads)
    results: dict[str, list[float]] = {"kv-on": [], "kv-off": []}
    usages: dict[str, Any] = {}
    try:
        client = OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=900, max_retries=0)
        started = time.perf_counter()
        tip, chain_tokens = build_chain(client, args.turns)
        built = time.perf_counter() - started
        unrelated(client, "kv-off", 0)  # warm-up
        for i in range(args.rounds):
            for model in ("kv-on", "kv-off"):
                unrelated(client, model, i + 1)
                question = f"Question {i + 1}: which of those books is the shortest?"
                ttft, usages[model] = timed_turn(client, model, tip, question)
                results[model].append(ttft)
    finally:
        server.terminate()
        server.wait(timeout=30)
    costs = state_costs(chain_tokens, args.threads)

    on, off = statistics.median(results["kv-on"]), statistics.median(results["kv-off"])
    print(
        f"prompt cache, built-in engine (SmolLM2-135M, n_ctx 4096), {args.rounds} alternating "
        f"rounds, {os.cpu_count()} cores, n_threads {args.threads}, "
        f"1-min load average {os.getloadavg()[0]:.2f}"
    )
    print(f"chain: {args.turns} turns, {chain_tokens} tokens, built in {built:.1f} s")
    print("| model | second-turn TTFT (median) | rounds | input / cached tokens (last) |")
    print("|---|---:|---|---|")
    for model in ("kv-on", "kv-off"):
        u = usages[model]
        cached = u.input_tokens_details.cached_tokens
        times = ", ".join(f"{x * 1000:.0f}" for x in results[model])
        print(
            f"| {model} | {statistics.median(results[model]) * 1000:.0f} ms | {times} | "
            f"{u.input_tokens} / {cached} |"
        )
    print(f"TTFT ratio prompt_cache off / on: {off / on:.1f}x")
    print(
        f"state of {costs['tokens']} tokens: {costs['bytes'] / 2**20:.1f} MiB "
        f"({costs['bytes'] / costs['tokens'] / 1024:.1f} KiB/token); save "
        f"{costs['save_s'] * 1000:.1f} ms, load {costs['load_s'] * 1000:.1f} ms (median); "
        f"prefill of the same tokens {costs['prefill_s'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
