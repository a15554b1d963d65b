"""Built-in engine throughput: responsed over HTTP vs raw llama-cpp-python, one run.

Both generate from the same GGUF with the same messages, temperature 0 and the same
token budget, never at the same time (they would fight for the cores), in alternating
rounds. Tokens/s is output tokens over wall time from request to last token, prompt
evaluation included on both sides. Only 127.0.0.1 is contacted.

    .venv/bin/python bench/builtin.py [--rounds 5] [--tokens 200]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from responsed.config import builtin_model_path

MESSAGES = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raw_round(llama: object, tokens: int) -> float:
    start = time.perf_counter()
    n = 0
    for chunk in llama.create_chat_completion(  # type: ignore[attr-defined]
        messages=MESSAGES, max_tokens=tokens, temperature=0.0, stream=True
    ):
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
    return n / (time.perf_counter() - start)


def server_round(base: str, tokens: int) -> float:
    body = {
        "model": "smollm2",
        "input": MESSAGES,
        "max_output_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "store": False,
    }
    start = time.perf_counter()
    output_tokens = 0
    with (
        httpx.Client(timeout=300) as http,
        http.stream("POST", f"{base}/v1/responses", json=body) as reply,
    ):
        for line in reply.iter_lines():
            if (line.startswith("data: ") and '"response.completed"' in line[:60]) or (
                line.startswith("data: ") and '"response.incomplete"' in line[:60]
            ):
                output_tokens = json.loads(line[6:])["response"]["usage"]["output_tokens"]
    return output_tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()

    import llama_cpp

    gguf = builtin_model_path()
    port = free_port()
    data = tempfile.mkdtemp()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "responsed"),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("responsed did not start")
            time.sleep(0.2)
        llama = llama_cpp.Llama(
            model_path=str(gguf), n_ctx=4096, n_threads=os.cpu_count(), verbose=False
        )
        raw_round(llama, 16)  # warm-up both
        server_round(base, 16)
        raw: list[float] = []
        ours: list[float] = []
        for _ in range(args.rounds):
            raw.append(raw_round(llama, args.tokens))
            ours.append(server_round(base, args.tokens))
        llama.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    r, o = statistics.median(raw), statistics.median(ours)
    print(
        f"built-in engine, {args.tokens} tokens, {args.rounds} alternating rounds, "
        f"{os.cpu_count()} cores"
    )
    print("| path | tokens/s (median) | rounds |")
    print("|---|---:|---|")
    print(
        f"| raw llama-cpp-python create_chat_completion | {r:.1f} | "
        f"{', '.join(f'{x:.1f}' for x in raw)} |"
    )
    print(
        f"| responsed POST /v1/responses (stream) | {o:.1f} | "
        f"{', '.join(f'{x:.1f}' for x in ours)} |"
    )
    verdict = "met" if o >= 0.95 * r else "NOT met"
    print(f"ratio responsed/raw: {o / r:.3f} (target ≥ 0.95: {verdict})")


if __name__ == "__main__":
    main()
