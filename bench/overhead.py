"""What responsed adds over calling a fast Chat Completions upstream directly.

Starts, on loopback only, (1) a minimal Chat Completions upstream (raw ASGI under
uvicorn + httptools + uvloop, in its own process) and (2) `responsed serve` pointed at
it, then drives both with the same low-overhead asyncio HTTP/1.1 keep-alive client:

- concurrency 1, non-streaming: latency p50/p99 direct vs `POST /v1/responses`
  (store on, SQLite) and with `store: false`; the added latency is ours - direct;
- concurrency 64, non-streaming: requests/s of each for a fixed duration;
- concurrency 32, streaming N-token replies: streams/s and time to first event;
- concurrency 1, streaming: time to first event / first token without queueing.

Every number comes from this one run, so the ratios are what matter. The upstream,
responsed and this load generator share the machine's cores (2 on the reference
machines): in the throughput phases they compete for CPU, so the CPU time each process
used per request is printed as well.

    .venv/bin/python bench/overhead.py [--quick] [--tokens N]

Internal: `bench/overhead.py --upstream --port P --tokens N` runs the upstream alone.

Upstream behaviour: `stream: false` gets one JSON completion with a short fixed reply.
`stream: true` gets SSE chunks (role chunk, content chunks, a finish chunk, a usage
chunk, `[DONE]`), one ASGI message per event: the short reply split into 9 chunks for
model "fast", `--tokens` chunks for model "fast-long". responsed always asks its upstream
to stream, so its non-streaming requests use "fast" (9 chunks) and its streaming ones
"fast-long", exactly like the direct requests they are compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
SHORT_TOKENS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
SHORT_TEXT = "".join(SHORT_TOKENS)
LONG_WORDS = [" the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog."]

# --------------------------------------------------------------------------------------
# The upstream: a raw ASGI Chat Completions server with every byte precomputed.
# --------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def long_tokens(n: int) -> list[str]:
    return [LONG_WORDS[i % len(LONG_WORDS)] for i in range(n)]


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def stream_events(model: str, tokens: list[str]) -> list[bytes]:
    """The SSE events of one streamed completion of `tokens`."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    events = [chunk({"role": "assistant"})]
    events += [chunk({"content": t}) for t in tokens]
    events.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": len(tokens)}
    usage["total_tokens"] = usage["prompt_tokens"] + len(tokens)
    events.append(_sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def completion_body(model: str, text: str, n_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": n_tokens,
                "total_tokens": 9 + n_tokens,
            },
        }
    )


def make_upstream_app(n_tokens: int) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    streams = {
        "fast": stream_events("fast", SHORT_TOKENS),
        "fast-long": stream_events("fast-long", long_tokens(n_tokens)),
    }
    completions = {
        "fast": completion_body("fast", SHORT_TEXT, len(SHORT_TOKENS)),
        "fast-long": completion_body("fast-long", "".join(long_tokens(n_tokens)), n_tokens),
    }
    sse_start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
    }

    async def reply(send: Send, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        parts: list[bytes] = []  # drain the whole body (a long chain's context is ~200 KB)
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if scope["method"] == "GET" and scope["path"] == "/health":
            await reply(send, 200, b'{"status":"ok"}')
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await reply(send, 404, b'{"error":{"message":"not found"}}')
            return
        request = orjson.loads(body)
        model = "fast-long" if request.get("model") == "fast-long" else "fast"
        if not request.get("stream"):
            await reply(send, 200, completions[model])
            return
        await send(sse_start)
        for event in streams[model]:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def run_upstream(port: int, n_tokens: int) -> None:
    import uvicorn

    uvicorn.run(
        make_upstream_app(n_tokens),
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


# --------------------------------------------------------------------------------------
# The client: one asyncio Protocol per keep-alive connection, parsing by hand.
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    start: float
    end: float
    first: float  # first body byte (first SSE event when streaming)
    marker: float  # first occurrence of the marker (first content token), or `end`
    status: int
    body: bytes = b""

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ttfe(self) -> float:
        return self.first - self.start

    @property
    def ttft(self) -> float:
        return self.marker - self.start


class HTTPClient(asyncio.Protocol):
    """A minimal HTTP/1.1 client: Content-Length and chunked bodies, no trailers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.future: asyncio.Future[Sample] | None = None
        self.lost = False
        self._reset(b"", keep=False)

    def _reset(self, marker: bytes, *, keep: bool) -> None:
        self.state = 0  # 0 head, 1 content-length body, 2 chunked body
        self.status = 0
        self.remaining = 0
        self.chunk_left = -1  # bytes left in the current chunk (+CRLF); -1: size line next
        self.marker = marker
        self.keep = keep
        self.parts: list[bytes] = []
        self.start = self.first = self.marker_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.future is not None and not self.future.done():
            self.future.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, payload: bytes, marker: bytes = b"", *, keep: bool = False) -> Sample:
        if self.lost or self.transport is None:
            raise ConnectionError("connection closed")
        self._reset(marker, keep=keep)
        self.future = asyncio.get_running_loop().create_future()
        self.start = time.perf_counter()
        self.transport.write(payload)
        return await self.future

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.marker and not self.marker_at:
            tail = bytes(self.buf[-len(self.marker) :]) if self.state else b""
            if self.marker in tail + data:
                self.marker_at = now
        buf = self.buf
        buf += data
        pos = 0
        if self.state == 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower() + b"\r\n"
            pos = end + 4
            self.status = int(head[9:12])
            if b"\r\ntransfer-encoding: chunked\r\n" in head:
                self.state = 2
            else:
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise ValueError("response without a length")
                self.remaining = int(head[at + 17 : head.find(b"\r\n", at + 2)])
                self.state = 1
        if self.state == 1:
            if len(buf) > pos and not self.first:
                self.first = now
            if len(buf) - pos < self.remaining:
                del buf[:pos]
                return
            if self.keep:
                self.parts.append(bytes(buf[pos : pos + self.remaining]))
            del buf[: pos + self.remaining]
            self._done(now)
            return
        while True:  # chunked: chunk_left counts the chunk's data plus its CRLF
            if self.chunk_left < 0:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                if size == 0:
                    if len(buf) < eol + 4:  # wait for the final CRLF (no trailers)
                        break
                    del buf[: eol + 4]
                    self._done(now)
                    return
                pos = eol + 2
                if not self.first:
                    self.first = now
                self.chunk_left = size + 2
            take = min(self.chunk_left, len(buf) - pos)
            if self.keep:
                data_end = pos + max(0, min(take, self.chunk_left - 2))
                self.parts.append(bytes(buf[pos:data_end]))
            pos += take
            self.chunk_left -= take
            if self.chunk_left:
                break
            self.chunk_left = -1
        del buf[:pos]

    def _done(self, now: float) -> None:
        body = b"".join(self.parts) if self.keep else b""
        sample = Sample(
            self.start, now, self.first or now, self.marker_at or now, self.status, body
        )
        self.state = 0
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_result(sample)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int) -> HTTPClient:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(HTTPClient, HOST, port)
    return protocol


def post(port: int, path: str, body: dict[str, Any]) -> bytes:
    data = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: */*\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


@dataclass
class Target:
    """One kind of request against one server."""

    name: str
    port: int
    payload: bytes
    marker: bytes = b""  # first content token marker (streaming)
    check: Callable[[Sample], None] | None = None


# --------------------------------------------------------------------------------------
# Load phases
# --------------------------------------------------------------------------------------


@dataclass
class CPU:
    """CPU seconds used by the processes of interest between two points."""

    pids: dict[str, int]
    marks: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, pid in self.pids.items():
            if pid == os.getpid():
                t = os.times()
                out[name] = t.user + t.system
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def start(self) -> None:
        self.marks = self._now()

    def used(self) -> dict[str, float]:
        now = self._now()
        return {k: now[k] - self.marks[k] for k in now}


async def sequential(
    target: Target, n: int, conn: HTTPClient, *, stream: bool = False
) -> list[Sample]:
    out = []
    for _ in range(n):
        sample = await conn.request(target.payload, target.marker)
        if sample.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {sample.status}")
        out.append(sample)
    del stream
    return out


async def verify(target: Target) -> None:
    conn = await connect(target.port)
    try:
        sample = await conn.request(target.payload, target.marker, keep=True)
    finally:
        conn.close()
    if sample.status != 200:
        raise RuntimeError(f"{target.name}: HTTP {sample.status}: {sample.body[:300]!r}")
    if target.check is not None:
        target.check(sample)


@dataclass
class LoadResult:
    count: int
    seconds: float
    samples: list[Sample]
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds


async def closed_loop(
    target: Target, concurrency: int, duration: float, warmup: float, cpu: CPU
) -> LoadResult:
    """`concurrency` connections each sending back to back; warm-up then measure."""
    conns = [await connect(target.port) for _ in range(concurrency)]
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    measure_from = t0 + warmup
    measure_to = measure_from + duration
    samples: list[Sample] = []
    cpu_marked = loop.create_future()

    async def worker(conn: HTTPClient) -> None:
        while time.perf_counter() < measure_to:
            sample = await conn.request(target.payload, target.marker)
            if sample.status != 200:
                raise RuntimeError(f"{target.name}: HTTP {sample.status}")
            samples.append(sample)

    async def marker() -> None:
        await asyncio.sleep(warmup)
        cpu.start()
        await asyncio.sleep(duration)
        cpu_marked.set_result(cpu.used())

    try:
        await asyncio.gather(marker(), *(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    done = [s for s in samples if measure_from <= s.end <= measure_to]
    started = [s for s in done if s.start >= measure_from]
    return LoadResult(len(done), duration, started, cpu_marked.result())


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], log: Path | None) -> None:
    deadline = time.monotonic() + 60
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as sock:
            sock.sendall(request)
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered GET {path} on port {port} within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def busy_processes(exclude: set[int]) -> list[str]:
    """Other processes that used > 20% of a CPU over the last 0.5 s (noise in the run)."""

    def ticks() -> dict[int, tuple[int, str]]:
        out = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = stat.read_text()
                name = text[text.index("(") + 1 : text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12]), name)
        return out

    before = ticks()
    time.sleep(0.5)
    after = ticks()
    hz = os.sysconf("SC_CLK_TCK")
    return [
        f"{pid} {name} ({100 * (t - before[pid][0]) / hz / 0.5:.0f}%)"
        for pid, (t, name) in after.items()
        if pid in before and pid not in exclude and (t - before[pid][0]) / hz / 0.5 > 0.2
    ]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


@dataclass
class Config:
    c1_n: int
    c1_warm: int
    rounds: int
    load_s: float
    warm_s: float
    stream_c1_n: int
    tokens: int


FULL = Config(c1_n=500, c1_warm=50, rounds=5, load_s=10.0, warm_s=1.5, stream_c1_n=100, tokens=256)
QUICK = Config(c1_n=60, c1_warm=10, rounds=2, load_s=1.5, warm_s=0.5, stream_c1_n=10, tokens=256)


def make_targets(up: int, ours: int, tokens: int) -> dict[str, Target]:
    messages = [{"role": "user", "content": "hi"}]
    full_long = "".join(long_tokens(tokens))

    def check_chat(sample: Sample) -> None:
        text = orjson.loads(sample.body)["choices"][0]["message"]["content"]
        assert text == SHORT_TEXT, text

    def check_response(sample: Sample) -> None:
        body = orjson.loads(sample.body)
        assert body["status"] == "completed", body
        assert body["output"][0]["content"][0]["text"] == SHORT_TEXT, body["output"]

    def check_chat_stream(n: int) -> Callable[[Sample], None]:
        def check(sample: Sample) -> None:
            assert sample.body.count(b'"content":') == n, sample.body[:300]
            assert b"data: [DONE]" in sample.body

        return check

    def check_response_stream(sample: Sample) -> None:
        assert sample.body.count(b"event: response.output_text.delta\n") == tokens
        assert b"event: response.completed\n" in sample.body
        assert full_long.encode() in sample.body  # output_text.done carries the text

    stream_opts = {"stream": True, "stream_options": {"include_usage": True}}
    chat = "/v1/chat/completions"
    return {
        "direct": Target(
            "direct", up, post(up, chat, {"model": "fast", "messages": messages}), b"", check_chat
        ),
        "direct_stream_short": Target(
            "direct_stream_short",
            up,
            post(up, chat, {"model": "fast", "messages": messages, **stream_opts}),
            b'"content":',
            check_chat_stream(len(SHORT_TOKENS)),
        ),
        "ours": Target(
            "ours",
            ours,
            post(ours, "/v1/responses", {"model": "fast", "input": "hi"}),
            b"",
            check_response,
        ),
        "ours_nostore": Target(
            "ours_nostore",
            ours,
            post(ours, "/v1/responses", {"model": "fast", "input": "hi", "store": False}),
            b"",
            check_response,
        ),
        "direct_stream": Target(
            "direct_stream",
            up,
            post(up, chat, {"model": "fast-long", "messages": messages, **stream_opts}),
            b'"content":',
            check_chat_stream(tokens),
        ),
        "ours_stream": Target(
            "ours_stream",
            ours,
            post(ours, "/v1/responses", {"model": "fast-long", "input": "hi", "stream": True}),
            b"event: response.output_text.delta",
            check_response_stream,
        ),
    }


PHASES = ("c1", "c1s", "c64", "c32")


async def measure(
    cfg: Config, up: int, ours: int, pids: dict[str, int], phases: tuple[str, ...] = PHASES
) -> dict[str, Any]:
    targets = make_targets(up, ours, cfg.tokens)
    for target in targets.values():
        await verify(target)
    res: dict[str, Any] = {}
    if "c1" in phases:
        res["c1"] = await phase_c1(cfg, targets, pids)
        print_progress("c1 non-streaming", res["c1"])
    if "c1s" in phases:
        res["c1_stream"] = await phase_c1_stream(cfg, targets)
        print_progress("c1 streaming", res["c1_stream"])
    all_cpu = CPU(dict(pids))
    if "c64" in phases:
        res["c64"] = {}
        for name in ("direct", "ours"):
            r = await closed_loop(targets[name], 64, cfg.load_s, cfg.warm_s, all_cpu)
            res["c64"][name] = summarize(r)
        print_progress("c64 non-streaming", res["c64"])
    if "c32" in phases:
        res["c32_stream"] = {}
        for name in ("direct_stream", "ours_stream"):
            r = await closed_loop(targets[name], 32, cfg.load_s, cfg.warm_s, all_cpu)
            res["c32_stream"][name] = summarize(r)
        print_progress("c32 streaming", res["c32_stream"])
    return res


async def phase_c1(cfg: Config, targets: dict[str, Target], pids: dict[str, int]) -> Any:
    """Non-streaming, one at a time; targets alternate in rounds so drift hits all alike."""
    c1_names = ["direct", "direct_stream_short", "ours", "ours_nostore"]
    conns = {name: await connect(targets[name].port) for name in c1_names}
    c1: dict[str, list[Sample]] = {name: [] for name in c1_names}
    c1_cpu = dict.fromkeys(c1_names, 0.0)
    for name in c1_names:
        await sequential(targets[name], cfg.c1_warm, conns[name])
    per_round = max(1, cfg.c1_n // cfg.rounds)
    cpu = CPU({"ours": pids["ours"]})
    for _ in range(cfg.rounds):
        for name in c1_names:
            cpu.start()
            c1[name] += await sequential(targets[name], per_round, conns[name])
            c1_cpu[name] += cpu.used()["ours"]
    for conn in conns.values():
        conn.close()
    return {
        name: {
            "n": len(s),
            "p50": pct([x.latency for x in s], 0.5),
            "p99": pct([x.latency for x in s], 0.99),
            "ours_cpu_per_req": c1_cpu[name] / len(s),
        }
        for name, s in c1.items()
    }


async def phase_c1_stream(cfg: Config, targets: dict[str, Target]) -> Any:
    """Streaming, one at a time: time to first event / first token without queueing."""
    c1s: dict[str, list[Sample]] = {}
    for name in ("direct_stream", "ours_stream"):
        conn = await connect(targets[name].port)
        await sequential(targets[name], max(3, cfg.stream_c1_n // 10), conn)
        c1s[name] = await sequential(targets[name], cfg.stream_c1_n, conn)
        conn.close()
    return {
        name: {
            "n": len(s),
            "ttfe_p50": pct([x.ttfe for x in s], 0.5),
            "ttft_p50": pct([x.ttft for x in s], 0.5),
            "total_p50": pct([x.latency for x in s], 0.5),
        }
        for name, s in c1s.items()
    }


def summarize(r: LoadResult) -> dict[str, Any]:
    lat = [s.latency for s in r.samples] or [float("nan")]
    return {
        "count": r.count,
        "rate": r.rate,
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "ttfe_p50": pct([s.ttfe for s in r.samples] or [float("nan")], 0.5),
        "ttft_p50": pct([s.ttft for s in r.samples] or [float("nan")], 0.5),
        "cpu_per_req_us": {k: v / max(1, r.count) * 1e6 for k, v in r.cpu.items()},
        "cpu_util": {k: v / r.seconds for k, v in r.cpu.items()},
    }


def print_progress(title: str, data: dict[str, Any]) -> None:
    print(f"  done: {title}: " + orjson.dumps(data).decode()[:400], file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(res: dict[str, Any], cfg: Config, info: dict[str, Any]) -> str:
    c1, c1s, c64, c32 = res["c1"], res["c1_stream"], res["c64"], res["c32_stream"]
    add50 = c1["ours"]["p50"] - c1["direct"]["p50"]
    add99 = c1["ours"]["p99"] - c1["direct"]["p99"]
    ns50 = c1["ours_nostore"]["p50"] - c1["direct"]["p50"]
    ns99 = c1["ours_nostore"]["p99"] - c1["direct"]["p99"]
    ttfe_add = c32["ours_stream"]["ttfe_p50"] - c32["direct_stream"]["ttfe_p50"]
    ttft_add = c32["ours_stream"]["ttft_p50"] - c32["direct_stream"]["ttft_p50"]
    lines = [
        f"responsed overhead bench ({'quick' if cfg.c1_n < FULL.c1_n else 'full'} run)",
        f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {platform.python_version()}",
        "NOTE: upstream, responsed and this load generator share these cores; in the",
        "throughput phases they compete for CPU (see the CPU-per-request lines).",
        f"other busy processes at start: {', '.join(info['noise_before']) or 'none'};"
        f" 1-min load average at the end: {info['loadavg_after']:.2f}",
        "",
        f"## concurrency 1, non-streaming (n={c1['ours']['n']} each, alternating rounds)",
        "| target | p50 ms | p99 ms | responsed CPU/req µs |",
        "|---|---:|---:|---:|",
    ]
    labels = {
        "direct": "direct upstream, stream:false",
        "direct_stream_short": "direct upstream, stream:true (9 chunks)",
        "ours": "responsed, store:true",
        "ours_nostore": "responsed, store:false",
    }
    for name, label in labels.items():
        row = c1[name]
        cpu = f"{row['ours_cpu_per_req'] * 1e6:.0f}" if name.startswith("ours") else "-"
        lines.append(f"| {label} | {ms(row['p50'])} | {ms(row['p99'])} | {cpu} |")
    vs_stream50 = c1["ours"]["p50"] - c1["direct_stream_short"]["p50"]
    lines += [
        "",
        f"added latency (store:true - direct): p50 {ms(add50)} ms (target ≤ 1 ms:"
        f" {verdict(add50 <= 0.001)}), p99 {ms(add99)} ms (target ≤ 3 ms:"
        f" {verdict(add99 <= 0.003)})",
        f"added latency (store:false - direct): p50 {ms(ns50)} ms, p99 {ms(ns99)} ms"
        f"  → storage costs p50 {ms(add50 - ns50)} ms",
        f"added latency vs direct stream:true (what responsed sends upstream): p50"
        f" {ms(vs_stream50)} ms",
        f"ratio p50 ours/direct: {c1['ours']['p50'] / c1['direct']['p50']:.2f}x",
        "",
        f"## concurrency 64, non-streaming ({cfg.load_s:.0f} s each)",
        "| target | req/s | p50 ms | p99 ms | CPU µs/req: upstream / responsed / client |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("direct", "direct upstream"), ("ours", "responsed (store:true)")):
        row = c64[name]
        cpu = row["cpu_per_req_us"]
        lines.append(
            f"| {label} | {row['rate']:.0f} | {ms(row['p50'])} | {ms(row['p99'])} |"
            f" {cpu['upstream']:.0f} / {cpu['ours']:.0f} / {cpu['client']:.0f} |"
        )
    rate = c64["ours"]["rate"]
    lines += [
        "",
        f"responsed/direct throughput: {rate / c64['direct']['rate']:.2f}x;"
        f" ≥ 1,500 req/s target: {verdict(rate >= 1500)} ({rate:.0f} req/s)",
        "",
        f"## concurrency 32, streaming {cfg.tokens}-token replies ({cfg.load_s:.0f} s each)",
        "| target | streams/s | TTFE p50 ms | first token p50 ms | stream p50 ms |"
        " CPU µs/stream: upstream / responsed / client |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("direct_stream", "direct upstream"), ("ours_stream", "responsed")):
        row = c32[name]
        cpu = row["cpu_per_req_us"]
        lines.append(
            f"| {label} | {row['rate']:.0f} | {ms(row['ttfe_p50'])} | {ms(row['ttft_p50'])} |"
            f" {ms(row['p50'])} | {cpu['upstream']:.0f} / {cpu['ours']:.0f} /"
            f" {cpu['client']:.0f} |"
        )
    srate = c32["ours_stream"]["rate"]
    lines += [
        "",
        f"responsed/direct streams/s: {srate / c32['direct_stream']['rate']:.2f}x;"
        f" ≥ 200 streams/s target: {verdict(srate >= 200)} ({srate:.0f} streams/s)",
        f"added time to first event p50: {ms(ttfe_add)} ms (target ≤ 2 ms:"
        f" {verdict(ttfe_add <= 0.002)}); added time to first token p50: {ms(ttft_add)} ms",
        "",
        "## concurrency 1, streaming (no queueing)",
        "| target | TTFE p50 ms | first token p50 ms | stream p50 ms |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("direct_stream", "direct upstream"), ("ours_stream", "responsed")):
        row = c1s[name]
        lines.append(
            f"| {label} | {ms(row['ttfe_p50'])} | {ms(row['ttft_p50'])} | {ms(row['total_p50'])} |"
        )
    ttfe1 = c1s["ours_stream"]["ttfe_p50"] - c1s["direct_stream"]["ttfe_p50"]
    ttft1 = c1s["ours_stream"]["ttft_p50"] - c1s["direct_stream"]["ttft_p50"]
    lines += [
        "",
        f"added TTFE p50 at c1: {ms(ttfe1)} ms; added first-token p50 at c1: {ms(ttft1)} ms",
        "",
        f"responsed RSS after the run: {info['rss_mb']:.0f} MB (target ≤ 150 MB:"
        f" {verdict(info['rss_mb'] <= 150)})",
    ]
    return "\n".join(lines)


def start_upstream(
    tmpdir: Path, up_port: int, tokens: int, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """Start the upstream, appending it to `procs` as soon as it exists (so the caller's
    `finally` stops it), and wait until it answers."""
    up_log = tmpdir / "upstream.log"
    upstream_cmd = [sys.executable, __file__, "--upstream", "--port", str(up_port)]
    with up_log.open("wb") as out:
        upstream = subprocess.Popen(
            [*upstream_cmd, "--tokens", str(tokens)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    procs.append(upstream)
    wait_http(up_port, "/health", upstream, up_log)
    return upstream


def start_responsed(
    tmpdir: Path, up_port: int, our_port: int, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """Start `responsed serve` (store on, SQLite in `tmpdir/data`, no built-in model)
    against the upstream, appending it to `procs` at once; wait until it answers.
    Calling it again with the same `tmpdir` restarts on the same data."""
    config = tmpdir / "responsed.toml"
    config.write_text(
        'builtin_model = false\nlog_level = "warning"\n'
        + "".join(
            f'[[models]]\nname = "{name}"\nengine = "openai"\n'
            f'base_url = "http://{HOST}:{up_port}/v1"\napi_key = "none"\n'
            for name in ("fast", "fast-long")
        )
    )
    our_log = tmpdir / "responsed.log"
    command = [str(Path(sys.executable).with_name("responsed"))]
    serve = [*command, "serve", "--host", HOST, "--port", str(our_port)]
    with our_log.open("ab") as out:
        ours = subprocess.Popen(
            [*serve, "--data-dir", str(tmpdir / "data"), "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    procs.append(ours)
    wait_http(our_port, "/health", ours, our_log)
    return ours


def start_servers(
    tmpdir: Path,
    up_port: int,
    our_port: int,
    tokens: int,
    procs: list[subprocess.Popen[bytes]],
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Start the upstream and responsed (each appended to `procs` as soon as it exists,
    so the caller's `finally` stops it), and wait until both answer."""
    upstream = start_upstream(tmpdir, up_port, tokens, procs)
    return upstream, start_responsed(tmpdir, up_port, our_port, procs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a much shorter smoke run")
    parser.add_argument("--tokens", type=int, default=256, help="content chunks per stream")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="subset of c1,c1s,c64,c32 (default: all)"
    )
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.port, args.tokens)
        return 0

    cfg = QUICK if args.quick else FULL
    cfg.tokens = args.tokens
    # SIGTERM -> SystemExit, so the `finally` below stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    noise = busy_processes({os.getpid()})
    if noise:
        print(f"WARNING: machine not idle, results will be noisy: {noise}", file=sys.stderr)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="responsed-bench-") as tmp:
        try:
            up_port, our_port = free_port(), free_port()
            upstream, ours = start_servers(Path(tmp), up_port, our_port, cfg.tokens, procs)
            pids = {"upstream": upstream.pid, "ours": ours.pid, "client": os.getpid()}
            print(
                f"upstream pid {upstream.pid} port {up_port};"
                f" responsed pid {ours.pid} port {our_port}",
                file=sys.stderr,
                flush=True,
            )
            import uvloop

            phases = tuple(p for p in args.phases.split(",") if p)
            res = uvloop.run(measure(cfg, up_port, our_port, pids, phases))
            info = {
                "noise_before": noise,
                "loadavg_after": load_average(),
                "nproc": os.cpu_count(),
                "cpu": cpu_model(),
                "rss_mb": rss_mb(ours.pid),
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            if set(PHASES) <= set(phases):
                print(report(res, cfg, info), flush=True)
            else:
                print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode(), flush=True)
            if args.json:
                args.json.write_bytes(
                    orjson.dumps({"info": info, "results": res}, option=orjson.OPT_INDENT_2)
                )
        finally:
            for proc in reversed(procs):
                stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
