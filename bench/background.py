"""What background mode costs: background responses against foreground ones, one run.

A background response persists every streamed event to SQLite as it is produced (the
events of one loop tick in one transaction) and wakes its followers after each write;
its stream is a reader of that log. Against bench/overhead.py's fast Chat Completions
upstream (same process setup: the upstream and `responsed serve` on 127.0.0.1, store
on, SQLite in a temp data dir), this measures, as ratios within one run:

1. streaming an N-token reply (`--tokens`, model "fast-long") at concurrency 1
   (alternating rounds) and 16 (closed loop): foreground `stream: true` vs
   `background: true, stream: true`: streams/s, time to the first output_text delta,
   time to the terminal event (p50/p99) and responsed's CPU time per stream (from
   /proc/<pid>/stat). At c16 the background row is measured twice: with the default
   `background_concurrency` (4 runs at a time for an upstream model; the rest wait
   queued) and on a second responsed configured with `background_concurrency = 16`;
2. `POST` with `background: true` and no stream (model "fast"): latency until the
   `queued` reply, vs a foreground non-streaming request: paced (each job left to
   finish before the next POST) and as a back-to-back burst, whose drain gives the
   CPU per background response end to end;
3. replay: `GET /v1/responses/{id}?stream=true` of a finished N-token background
   response, from the start and from the middle (`starting_after`): ms per replay,
   events/s, CPU per replay, at c1 and in a c16 closed loop.

    .venv/bin/python bench/background.py [--quick] [--tokens N] [--json PATH]
        [--no-results]

A full run replaces the section "## Background mode (bench/background.py)" of
bench/RESULTS.md with its report (not with --quick or --no-results).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead
from overhead import CPU, HOST, HTTPClient, Sample, ms, pct, post
from results import RESULTS, write_section

SECTION = "## Background mode (bench/background.py)"
DELTA = b"event: response.output_text.delta\n"
TERMINAL = b"event: response.completed\n"
WIDE_SLOTS = 16  # background_concurrency of the second server
KINDS = ("fg", "bg")  # foreground, background


@dataclass
class Config:
    c1_n: int  # streams per kind at c1
    rounds: int
    warm: int
    load_s: float  # c16 closed loops
    warm_s: float
    post_n: int  # non-streaming POSTs per kind (paced), and the burst
    replay_n: int


FULL = Config(c1_n=300, rounds=5, warm=20, load_s=8.0, warm_s=1.0, post_n=400, replay_n=300)
QUICK = Config(c1_n=40, rounds=2, warm=5, load_s=1.5, warm_s=0.5, post_n=60, replay_n=40)


# --------------------------------------------------------------------------------------
# Client glue: overhead's HTTPClient, plus the arrival time of the terminal event
# --------------------------------------------------------------------------------------


class Client(HTTPClient):
    """HTTPClient that also notes when `event: response.completed` arrived."""

    def _reset(self, marker: bytes, *, keep: bool) -> None:
        super()._reset(marker, keep=keep)
        self.terminal_at = 0.0
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        if not self.terminal_at:
            seen = self.tail + data
            if TERMINAL in seen:
                self.terminal_at = time.perf_counter()
            self.tail = seen[-len(TERMINAL) :]
        super().data_received(data)

    async def timed(self, payload: bytes, marker: bytes = b"", *, keep: bool = False) -> Rec:
        sample = await self.request(payload, marker, keep=keep)
        if sample.status != 200:
            raise RuntimeError(f"HTTP {sample.status}: {sample.body[:300]!r}")
        return Rec(sample, (self.terminal_at or sample.end) - sample.start)


@dataclass(slots=True)
class Rec:
    sample: Sample
    terminal: float  # seconds from the request to the terminal event (or the body's end)


async def connect(port: int) -> Client:
    _, protocol = await asyncio.get_running_loop().create_connection(Client, HOST, port)
    return protocol


def get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: */*\r\n\r\n".encode()


def sse_events(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]


# --------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------


def start_responsed_slots(
    tmpdir: Path, up_port: int, our_port: int, slots: int, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """overhead.start_responsed with `background_concurrency = slots` on both models
    (start_responsed writes a fixed config, with no hook for per-model settings)."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    config = tmpdir / "responsed.toml"
    config.write_text(
        'builtin_model = false\nlog_level = "warning"\n'
        + "".join(
            f'[[models]]\nname = "{name}"\nengine = "openai"\n'
            f'base_url = "http://{HOST}:{up_port}/v1"\napi_key = "none"\n'
            f"background_concurrency = {slots}\n"
            for name in ("fast", "fast-long")
        )
    )
    log = tmpdir / "responsed.log"
    serve = [str(Path(sys.executable).with_name("responsed")), "serve", "--host", HOST]
    serve += ["--port", str(our_port), "--data-dir", str(tmpdir / "data")]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*serve, "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    procs.append(proc)
    overhead.wait_http(our_port, "/health", proc, log)
    return proc


# --------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------


@dataclass
class Env:
    cfg: Config
    tokens: int
    port: int  # responsed, default background_concurrency
    pid: int
    wide_port: int  # responsed, background_concurrency = WIDE_SLOTS
    wide_pid: int

    def stream_body(self, background: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": "fast-long", "input": "hi", "stream": True}
        if background:
            body["background"] = True
        return body


def stats(recs: list[Rec]) -> dict[str, float]:
    first = [r.sample.ttft for r in recs]
    term = [r.terminal for r in recs]
    return {
        "n": len(recs),
        "ttft_p50": pct(first, 0.5),
        "ttft_p99": pct(first, 0.99),
        "terminal_p50": pct(term, 0.5),
        "terminal_p99": pct(term, 0.99),
        "spread_p50": pct([t - f for t, f in zip(term, first, strict=True)], 0.5),
    }


async def verify_streams(env: Env) -> dict[str, Any]:
    """One stream of each kind, checked; returns the finished background response's id
    and its event count (the replay phase's subject)."""
    out: dict[str, Any] = {}
    for kind, background in (("fg", False), ("bg", True)):
        conn = await connect(env.port)
        payload = post(env.port, "/v1/responses", env.stream_body(background))
        rec = await conn.timed(payload, DELTA, keep=True)
        conn.close()
        events = sse_events(rec.sample.body)
        types = [e["type"] for e in events]
        assert types.count("response.output_text.delta") == env.tokens, types[:5]
        assert types[-1] == "response.completed", types[-3:]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert ("response.queued" in types) == background, types[:4]
        out[kind] = {"events": len(events), "bytes": len(rec.sample.body)}
        if background:
            out["bg_id"] = events[0]["response"]["id"]
    return out


async def phase_c1_stream(env: Env) -> dict[str, Any]:
    """Foreground and background streams one at a time, in alternating rounds."""
    cfg = env.cfg
    payloads = {k: post(env.port, "/v1/responses", env.stream_body(k == "bg")) for k in KINDS}
    conns = {k: await connect(env.port) for k in KINDS}
    recs: dict[str, list[Rec]] = {k: [] for k in KINDS}
    cpu_used = dict.fromkeys(KINDS, 0.0)
    wall = dict.fromkeys(KINDS, 0.0)
    for k in KINDS:
        for _ in range(cfg.warm):
            await conns[k].timed(payloads[k], DELTA)
    cpu = CPU({"ours": env.pid})
    per_round = max(1, cfg.c1_n // cfg.rounds)
    for _ in range(cfg.rounds):
        for k in KINDS:
            cpu.start()
            t0 = time.perf_counter()
            for _ in range(per_round):
                recs[k].append(await conns[k].timed(payloads[k], DELTA))
            wall[k] += time.perf_counter() - t0
            cpu_used[k] += cpu.used()["ours"]
    for conn in conns.values():
        conn.close()
    return {
        k: {
            **stats(recs[k]),
            "rate": len(recs[k]) / wall[k],
            "cpu_per_stream": cpu_used[k] / len(recs[k]),
        }
        for k in KINDS
    }


async def closed_loop(
    port: int, pid: int, payload: bytes, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """Like overhead.closed_loop, with this module's client (terminal-event times)."""
    conns = [await connect(port) for _ in range(concurrency)]
    t0 = time.perf_counter()
    measure_from, measure_to = t0 + warmup, t0 + warmup + duration
    recs: list[Rec] = []
    cpu = CPU({"ours": pid})
    used: dict[str, float] = {}

    async def worker(conn: Client) -> None:
        while time.perf_counter() < measure_to:
            recs.append(await conn.timed(payload, DELTA))

    async def marker() -> None:
        await asyncio.sleep(warmup)
        cpu.start()
        await asyncio.sleep(duration)
        used.update(cpu.used())

    try:
        await asyncio.gather(marker(), *(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    done = [r for r in recs if measure_from <= r.sample.end <= measure_to]
    started = [r for r in done if r.sample.start >= measure_from]
    return {
        **stats(started),
        "count": len(done),
        "rate": len(done) / duration,
        "cpu_per_stream": used["ours"] / max(1, len(done)),
        "cpu_util": used["ours"] / duration,
    }


async def phase_c16_stream(env: Env) -> dict[str, Any]:
    cfg = env.cfg
    runs = (
        ("fg", env.port, env.pid, False),
        ("bg", env.port, env.pid, True),
        ("bg_wide", env.wide_port, env.wide_pid, True),
    )
    out = {}
    for name, port, pid, background in runs:
        payload = post(port, "/v1/responses", env.stream_body(background))
        out[name] = await closed_loop(port, pid, payload, 16, cfg.load_s, cfg.warm_s)
        progress(f"c16 {name}", out[name])
    return out


async def wait_finished(conn: Client, port: int, rid: str) -> None:
    """Follow a background response's stream to its end (untimed)."""
    await conn.timed(get(port, f"/v1/responses/{rid}?stream=true"))


async def phase_post(env: Env) -> dict[str, Any]:
    """Non-streaming POST: foreground (whole reply) vs background (until `queued`)."""
    cfg = env.cfg
    fg = post(env.port, "/v1/responses", {"model": "fast", "input": "hi"})
    bg = post(env.port, "/v1/responses", {"model": "fast", "input": "hi", "background": True})
    conn, waiter = await connect(env.port), await connect(env.port)
    lat: dict[str, list[float]] = {"fg": [], "bg": []}
    cpu_used = {"fg": 0.0}

    async def one_bg() -> float:
        rec = await conn.timed(bg, keep=True)
        body = orjson.loads(rec.sample.body)
        assert body["status"] == "queued" and body["background"], body
        await wait_finished(waiter, env.port, body["id"])
        return rec.sample.latency

    for _ in range(cfg.warm):
        await conn.timed(fg)
        await one_bg()
    cpu = CPU({"ours": env.pid})
    per_round = max(1, cfg.post_n // cfg.rounds)
    for _ in range(cfg.rounds):
        cpu.start()
        for _ in range(per_round):
            lat["fg"].append((await conn.timed(fg)).sample.latency)
        cpu_used["fg"] += cpu.used()["ours"]
        for _ in range(per_round):
            lat["bg"].append(await one_bg())
    out: dict[str, Any] = {
        k: {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99)} for k, v in lat.items()
    }
    out["fg"]["cpu_per_req"] = cpu_used["fg"] / len(lat["fg"])

    # Burst: POSTs back to back while the workers run the jobs; then drain.
    ids: list[str] = []
    burst: list[float] = []
    cpu.start()
    t0 = time.perf_counter()
    for _ in range(cfg.post_n):
        rec = await conn.timed(bg, keep=True)
        burst.append(rec.sample.latency)
        ids.append(orjson.loads(rec.sample.body)["id"])
    submitted = time.perf_counter() - t0
    await wait_finished(waiter, env.port, ids[-1])
    drained = time.perf_counter() - t0
    used = cpu.used()["ours"]
    unfinished = 0
    for rid in ids:
        rec = await conn.timed(get(env.port, f"/v1/responses/{rid}"), keep=True)
        if orjson.loads(rec.sample.body)["status"] != "completed":
            unfinished += 1
            await wait_finished(waiter, env.port, rid)
    conn.close()
    waiter.close()
    out["burst"] = {
        "n": len(burst),
        "p50": pct(burst, 0.5),
        "p99": pct(burst, 0.99),
        "submit_rate": len(burst) / submitted,
        "drain_s": drained,
        "completed_rate": len(burst) / drained,
        "cpu_per_response": used / len(burst),
        "unfinished_when_last_done": unfinished,
    }
    return out


async def phase_replay(env: Env, rid: str, n_events: int) -> dict[str, Any]:
    cfg = env.cfg
    mid = n_events // 2 - 1  # starting_after: the second half of the log is replayed
    targets = {
        "full": (get(env.port, f"/v1/responses/{rid}?stream=true"), n_events),
        "mid": (
            get(env.port, f"/v1/responses/{rid}?stream=true&starting_after={mid}"),
            n_events - mid - 1,
        ),
    }
    conn = await connect(env.port)
    for name, (payload, expect) in targets.items():  # check each once
        events = sse_events((await conn.timed(payload, keep=True)).sample.body)
        assert len(events) == expect, (name, len(events), expect)
        assert events[-1]["type"] == "response.completed"
        assert events[0]["sequence_number"] == n_events - expect
    out: dict[str, Any] = {}
    cpu = CPU({"ours": env.pid})
    for name, (payload, expect) in targets.items():
        for _ in range(cfg.warm):
            await conn.timed(payload)
        cpu.start()
        recs = [await conn.timed(payload) for _ in range(cfg.replay_n)]
        used = cpu.used()["ours"]
        lat = [r.sample.latency for r in recs]
        mean = sum(lat) / len(lat)
        out[name] = {
            "events": expect,
            "n": len(lat),
            "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99),
            "first_event_p50": pct([r.sample.ttfe for r in recs], 0.5),
            "events_per_s": expect / mean,
            "cpu_per_replay": used / len(lat),
        }
    conn.close()
    payload, expect = targets["full"]
    load = await closed_loop(env.port, env.pid, payload, 16, cfg.load_s / 2, cfg.warm_s)
    out["full_c16"] = {**load, "events": expect, "events_per_s": load["rate"] * expect}
    return out


def db_stats(data_dir: Path) -> dict[str, Any]:
    """Event-log footprint of the run, read from the database file (read-only)."""
    conn = sqlite3.connect(f"file:{data_dir / 'responsed.sqlite3'}?mode=ro", uri=True)
    try:
        bg, rows, size = conn.execute(
            "SELECT count(DISTINCT response_id), count(*), coalesce(sum(length(body)), 0)"
            " FROM response_events"
        ).fetchone()
        n, body = conn.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM responses"
        ).fetchone()
    finally:
        conn.close()
    return {
        "bg_responses": bg,
        "event_rows": rows,
        "event_mb": size / 2**20,
        "event_kb_per_bg": size / max(1, bg) / 1024,
        "responses": n,
        "body_kb_avg": body / max(1, n) / 1024,
    }


async def measure(env: Env, data_dir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"verify": await verify_streams(env)}
    res["c1_stream"] = await phase_c1_stream(env)
    progress("c1 streaming", res["c1_stream"])
    res["c16_stream"] = await phase_c16_stream(env)
    res["post"] = await phase_post(env)
    progress("non-streaming POST", res["post"])
    res["replay"] = await phase_replay(env, res["verify"]["bg_id"], res["verify"]["bg"]["events"])
    progress("replay", res["replay"])
    return res


def progress(title: str, data: dict[str, Any]) -> None:
    print(f"  done: {title}: " + orjson.dumps(data).decode()[:300], file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def report(res: dict[str, Any], cfg: Config, tokens: int, info: dict[str, Any]) -> str:
    c1, c16, po, rp = res["c1_stream"], res["c16_stream"], res["post"], res["replay"]
    v = res["verify"]
    kind = "quick" if cfg is QUICK else "full"
    lines = [
        f"responsed background-mode bench ({kind} run, {info['date']}, 127.0.0.1 only)",
        f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {platform.python_version()};"
        f" other busy processes at start: {', '.join(info['noise_before']) or 'none'};"
        f" 1-min load average at the end: {info['loadavg_after']:.2f}",
        f"{tokens}-token replies: {v['fg']['events']} events foreground,"
        f" {v['bg']['events']} background; upstream, responsed and this client share the"
        " cores",
        "",
        f"## 1. streaming, concurrency 1 (n={c1['fg']['n']} each, {cfg.rounds} alternating rounds)",
        "| mode | streams/s | first delta p50 / p99 ms | terminal event p50 / p99 ms |"
        " responsed CPU ms/stream |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(label: str, r: dict[str, Any]) -> str:
        return (
            f"| {label} | {r['rate']:.0f} | {ms(r['ttft_p50'])} / {ms(r['ttft_p99'])} |"
            f" {ms(r['terminal_p50'])} / {ms(r['terminal_p99'])} |"
            f" {r['cpu_per_stream'] * 1e3:.2f} |"
        )

    def ratios(bg: dict[str, Any], fg: dict[str, Any]) -> str:
        return (
            f"background/foreground: streams/s {ratio(bg['rate'], fg['rate'])}, first delta"
            f" p50 {ratio(bg['ttft_p50'], fg['ttft_p50'])}, terminal p50"
            f" {ratio(bg['terminal_p50'], fg['terminal_p50'])} /"
            f" p99 {ratio(bg['terminal_p99'], fg['terminal_p99'])},"
            f" CPU/stream {ratio(bg['cpu_per_stream'], fg['cpu_per_stream'])};"
            f" first delta → terminal p50: {ms(fg['spread_p50'])} ms foreground,"
            f" {ms(bg['spread_p50'])} ms background"
        )

    lines += [
        row("foreground stream", c1["fg"]),
        row("background stream", c1["bg"]),
        "",
        ratios(c1["bg"], c1["fg"]),
        "",
        f"## 1. streaming, concurrency 16 ({cfg.load_s:.0f} s closed loop each)",
        "| mode | streams/s | first delta p50 / p99 ms | terminal event p50 / p99 ms |"
        " responsed CPU ms/stream | responsed CPU util |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("fg", "foreground stream"),
        ("bg", "background stream (default background_concurrency: 4)"),
        ("bg_wide", f"background stream (background_concurrency = {WIDE_SLOTS})"),
    ):
        lines.append(row(label, c16[name]) + f" {c16[name]['cpu_util'] * 100:.0f}% |")
    lines += [
        "",
        "default slots, " + ratios(c16["bg"], c16["fg"]),
        f"{WIDE_SLOTS} slots, " + ratios(c16["bg_wide"], c16["fg"]),
        "",
        f"## 2. non-streaming POST, concurrency 1 (n={po['fg']['n']} each)",
        "| request | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| foreground (whole reply, 9-chunk upstream) | {ms(po['fg']['p50'])} |"
        f" {ms(po['fg']['p99'])} |",
        f"| background, until `queued` (paced: previous job finished) | {ms(po['bg']['p50'])} |"
        f" {ms(po['bg']['p99'])} |",
        f"| background, until `queued` (burst: jobs running meanwhile) |"
        f" {ms(po['burst']['p50'])} | {ms(po['burst']['p99'])} |",
        "",
        f"background/foreground p50: paced {ratio(po['bg']['p50'], po['fg']['p50'])},"
        f" burst {ratio(po['burst']['p50'], po['fg']['p50'])};"
        f" p99: paced {ratio(po['bg']['p99'], po['fg']['p99'])},"
        f" burst {ratio(po['burst']['p99'], po['fg']['p99'])}",
        f"burst of {po['burst']['n']}: submitted at {po['burst']['submit_rate']:.0f}/s, all"
        f" completed after {po['burst']['drain_s']:.2f} s"
        f" ({po['burst']['completed_rate']:.0f} responses/s);"
        f" responsed CPU per response: foreground {po['fg']['cpu_per_req'] * 1e3:.2f} ms,"
        f" background end to end {po['burst']['cpu_per_response'] * 1e3:.2f} ms"
        f" ({ratio(po['burst']['cpu_per_response'], po['fg']['cpu_per_req'])})",
        "",
        f"## 3. replay of a finished {tokens}-token background response (GET ?stream=true)",
        "| replay | events | ms p50 / p99 | first event p50 ms | events/s |"
        " responsed CPU ms/replay |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("full", "from the start, c1"), ("mid", "starting_after=middle, c1")):
        r = rp[name]
        lines.append(
            f"| {label} | {r['events']} | {ms(r['p50'])} / {ms(r['p99'])} |"
            f" {ms(r['first_event_p50'])} | {r['events_per_s']:.0f} |"
            f" {r['cpu_per_replay'] * 1e3:.2f} |"
        )
    r16 = rp["full_c16"]
    full, mid = rp["full"], rp["mid"]
    per_event = (full["cpu_per_replay"] - mid["cpu_per_replay"]) / (full["events"] - mid["events"])
    fixed = full["cpu_per_replay"] - per_event * full["events"]
    lines += [
        f"| from the start, c16 closed loop ({r16['rate']:.0f} replays/s) | {r16['events']} |"
        f" {ms(r16['terminal_p50'])} / {ms(r16['terminal_p99'])} | - |"
        f" {r16['events_per_s']:.0f} | {r16['cpu_per_stream'] * 1e3:.2f} |",
        "",
        f"replay/live foreground stream at c1: time p50"
        f" {ratio(rp['full']['p50'], c1['fg']['terminal_p50'])}, CPU"
        f" {ratio(rp['full']['cpu_per_replay'], c1['fg']['cpu_per_stream'])};"
        f" middle/full time p50 {ratio(rp['mid']['p50'], rp['full']['p50'])}",
        f"replay CPU, from full vs middle: {per_event * 1e6:.1f} µs per event +"
        f" {fixed * 1e3:.2f} ms per request",
    ]
    db = info.get("db")
    if db:
        lines += [
            "",
            f"event log: {db['event_rows']} rows, {db['event_mb']:.1f} MB of event JSON for"
            f" {db['bg_responses']} background responses"
            f" ({db['event_kb_per_bg']:.0f} KB each, vs {db['body_kb_avg']:.1f} KB for a"
            " stored response body); kept until the response is deleted",
        ]
    lines.append(f"responsed RSS after the run: {info['rss_mb']:.0f} MB")
    return "\n".join(lines)


def write_results(text: str, command: str, date: str) -> None:
    write_section(SECTION, text, command, date)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a much shorter smoke run")
    parser.add_argument("--tokens", type=int, default=256, help="content chunks per stream")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--no-results", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    noise = overhead.busy_processes({os.getpid()})
    if noise:
        print(f"WARNING: machine not idle, results will be noisy: {noise}", file=sys.stderr)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="responsed-bench-bg-") as tmp:
        try:
            up_port, port, wide_port = (overhead.free_port() for _ in range(3))
            _, ours = overhead.start_servers(Path(tmp), up_port, port, args.tokens, procs)
            wide_dir = Path(tmp) / "wide"
            wide = start_responsed_slots(wide_dir, up_port, wide_port, WIDE_SLOTS, procs)
            print(
                f"responsed pid {ours.pid} port {port}; with {WIDE_SLOTS} background slots"
                f" pid {wide.pid} port {wide_port}",
                file=sys.stderr,
                flush=True,
            )
            env = Env(cfg, args.tokens, port, ours.pid, wide_port, wide.pid)
            import uvloop

            res = uvloop.run(measure(env, Path(tmp) / "data"))
            info = {
                "noise_before": noise,
                "loadavg_after": overhead.load_average(),
                "nproc": os.cpu_count(),
                "cpu": overhead.cpu_model(),
                "rss_mb": overhead.rss_mb(ours.pid),
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "db": db_stats(Path(tmp) / "data"),
            }
        finally:
            for proc in reversed(procs):
                overhead.stop(proc)
    text = report(res, cfg, args.tokens, info)
    print(text, flush=True)
    if args.json:
        args.json.write_bytes(
            orjson.dumps({"info": info, "results": res}, option=orjson.OPT_INDENT_2)
        )
    if not (args.quick or args.no_results):
        command = ".venv/bin/python bench/background.py" + (
            f" --tokens {args.tokens}" if args.tokens != 256 else ""
        )
        write_results(text, command, str(info["date"]))
        print(f"updated {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
