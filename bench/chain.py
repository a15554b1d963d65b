"""Cost of rebuilding a `previous_response_id` chain: in the store, and end to end.

DESIGN.md: "rebuilding a 1,000-turn `previous_response_id` chain costs ≤ 1.5x a 1-turn
one (excluding the model)".

Store level (in process, no server): builds a 1-turn and a T-turn chain (one input and
one output message per turn) in a temporary SQLite store and prints the median
`chain_items` time of each and their ratio. The T-turn chain returns Tx the items, so its
time grows with the item count; what the store guarantees is one query regardless of
length. Also times the in-process pieces of a cache miss (render the chain with
`Context.of`, extend it by one turn, serialize the upstream body) and put+get latency of
a typical response, the store's share of the request hot path.

End to end: starts bench/overhead.py's fast Chat Completions upstream and `responsed
serve` (store on, SQLite, `builtin_model = false`) on 127.0.0.1, builds a T-turn chain
and a few 1-turn chains through `POST /v1/responses` with `previous_response_id` (inputs
"turn N", the upstream's short fixed reply), then at concurrency 1, in alternating
rounds, times a new turn (`store: false`, so neither the chain nor the cache entry
changes) on top of (a) a 1-turn chain and (b) the T-turn chain, both served from
responsed's context cache, plus the direct upstream call responsed makes for each
(the same Chat Completions body: 3 or 2T+1 messages, `stream: true`). The gateway-only
ratio is ((b) - direct(b)) / ((a) - direct(a)). Then (c) restarts responsed on the same
data dir (cache empty) and times the first request on top of the T-turn chain, on other
T-turn tips and on other 1-turn chains (each one a cache miss: one recursive query plus
a full render).

    .venv/bin/python bench/chain.py [--quick] [--store-only | --e2e-only] [--json PATH]
        [--runs N] [--turns T]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import statistics
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
from overhead import HOST, SHORT_TEXT, SHORT_TOKENS, HTTPClient, Sample, ms, pct, post

try:
    from responsed.store.base import DEFAULT_PROJECT, ResponseRecord
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from responsed.store.base import DEFAULT_PROJECT, ResponseRecord
from responsed.runtime.context_cache import Context
from responsed.store.sqlite import SQLiteResponseStore

TARGET_RATIO = 1.5
REQUEST_TIMEOUT = 30.0  # seconds, any single request
CHAT = "/v1/chat/completions"

# --------------------------------------------------------------------------------------
# Store level (in process)
# --------------------------------------------------------------------------------------


def message(item_id: str, role: str, text: str) -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {
        "type": "message",
        "id": item_id,
        "role": role,
        "content": [{"type": kind, "text": text}],
    }


def record(rid: str, prev: str | None) -> ResponseRecord:
    out = message(f"msg_{rid}_o", "assistant", "It is sunny and 22 degrees in Paris today. " * 4)
    body = {
        "id": rid,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "model": "qwen3-8b",
        "previous_response_id": prev,
        "output": [out],
        "usage": {"input_tokens": 50, "output_tokens": 40, "total_tokens": 90},
    }
    inputs = [message(f"msg_{rid}_i", "user", "What's the weather in Paris? " * 2)]
    return ResponseRecord(rid, DEFAULT_PROJECT, prev, 1_700_000_000, "completed", body, inputs)


async def build_store_chain(store: SQLiteResponseStore, prefix: str, turns: int) -> str:
    prev = None
    for t in range(turns):
        rid = f"resp_{prefix}_{t}"
        await store.put_response(record(rid, prev))
        prev = rid
    assert prev is not None
    return prev


async def median_chain_time(store: SQLiteResponseStore, rid: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        items = await store.chain_items(DEFAULT_PROJECT, rid)
        times.append(time.perf_counter() - start)
        assert items is not None
    return statistics.median(times)


async def median_miss_pieces(store: SQLiteResponseStore, rid: str, runs: int) -> dict[str, float]:
    """Median times of the in-process pieces of a cache miss on `rid`."""
    turn = [message("msg_next", "user", "next turn")]
    out: dict[str, list[float]] = {"render": [], "extend": [], "dumps": []}
    items = await store.chain_items(DEFAULT_PROJECT, rid)
    assert items is not None
    for _ in range(runs):
        t0 = time.perf_counter()
        history = Context.of(items)
        t1 = time.perf_counter()
        context = history.extend(turn)
        messages = list(context.messages)
        t2 = time.perf_counter()
        orjson.dumps({"model": "m", "messages": messages, "stream": True})
        t3 = time.perf_counter()
        out["render"].append(t1 - t0)
        out["extend"].append(t2 - t1)
        out["dumps"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in out.items()}


async def store_bench(runs: int, turns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteResponseStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        try:
            one = await build_store_chain(store, "one", 1)
            long = await build_store_chain(store, "long", turns)
            await median_chain_time(store, long, 3)  # warm the page cache
            t1 = await median_chain_time(store, one, runs)
            tn = await median_chain_time(store, long, runs)
            p1 = await median_miss_pieces(store, one, runs)
            pn = await median_miss_pieces(store, long, runs)
            lat = []
            for i in range(2000):
                rec = record(f"resp_pg_{i}", None)
                start = time.perf_counter()
                await store.put_response(rec)
                await store.get_response(DEFAULT_PROJECT, rec.id)
                lat.append(time.perf_counter() - start)
        finally:
            await store.aclose()
    return {
        "runs": runs,
        "turns": turns,
        "chain_1": t1,
        "chain_n": tn,
        "pieces_1": p1,
        "pieces_n": pn,
        "put_get_p50": pct(lat, 0.5),
        "put_get_p99": pct(lat, 0.99),
    }


def store_report(r: dict[str, Any]) -> str:
    turns, t1, tn = r["turns"], r["chain_1"], r["chain_n"]
    p1, pn = r["pieces_1"], r["pieces_n"]
    us = 1e6
    lines = [
        f"## store level, in process (median of {r['runs']})",
        f"| step | 1 turn (2 items) µs | {turns} turns ({2 * turns} items) µs | ratio |",
        "|---|---:|---:|---:|",
        f"| `store.chain_items` (one recursive query) | {t1 * us:.1f} | {tn * us:.1f} |"
        f" {tn / t1:.1f}x |",
    ]
    labels = {
        "render": "`Context.of(chain)` (render to chat messages)",
        "extend": "extend by the new turn + `list(messages)`",
        "dumps": "`orjson.dumps` of the upstream body",
    }
    for key, label in labels.items():
        a, b = p1[key], pn[key]
        lines.append(f"| {label} | {a * us:.1f} | {b * us:.1f} | {b / a:.1f}x |")
    miss_1 = t1 + sum(p1.values())
    miss_n = tn + sum(pn.values())
    lines += [
        f"| **a cache miss, these pieces together** | {miss_1 * us:.1f} | {miss_n * us:.1f} |"
        f" {miss_n / miss_1:.1f}x |",
        "",
        f"chain_items per item: {tn / (2 * turns) * us:.2f} µs;"
        f" put_response + get_response: p50 {r['put_get_p50'] * us:.0f} µs,"
        f" p99 {r['put_get_p99'] * us:.0f} µs (n=2000)",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# End to end (responsed + the fast upstream)
# --------------------------------------------------------------------------------------


@dataclass
class E2EConfig:
    turns: int  # length of the long chain
    n: int  # measured requests per target at c1
    warm: int  # warm-up requests per target
    rounds: int  # the targets take turns in this many rounds
    cold: int  # cold requests of each kind after the restart
    deadline: float  # seconds for the whole end-to-end phase


FULL_E2E = E2EConfig(turns=1000, n=200, warm=20, rounds=5, cold=8, deadline=900.0)
QUICK_E2E = E2EConfig(turns=200, n=40, warm=5, rounds=2, cold=3, deadline=300.0)


def chat_messages(turns: int, last: str) -> list[dict[str, str]]:
    """The Chat Completions messages responsed renders for a new turn on a chain built
    by `build_chain`: one user and one assistant message per turn, then `last`."""
    messages = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"turn {t}"})
        messages.append({"role": "assistant", "content": SHORT_TEXT})
    messages.append({"role": "user", "content": last})
    return messages


async def timed(conn: HTTPClient, payload: bytes, *, keep: bool = False) -> Sample:
    sample = await asyncio.wait_for(conn.request(payload, keep=keep), REQUEST_TIMEOUT)
    if sample.status != 200:
        raise RuntimeError(f"HTTP {sample.status}: {sample.body[:300]!r}")
    return sample


def check_response(sample: Sample) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(sample.body)
    assert body["status"] == "completed", body
    assert body["output"][0]["content"][0]["text"] == SHORT_TEXT, body["output"]
    return body


def check_chat_stream(sample: Sample) -> None:
    assert sample.body.count(b'"content":') == len(SHORT_TOKENS), sample.body[:300]
    assert b"data: [DONE]" in sample.body


async def build_chain(conn: HTTPClient, port: int, turns: int, label: str) -> list[Sample]:
    """`turns` stored responses, each on top of the previous one; their samples, whose
    `body` is replaced by the response id."""
    prev: str | None = None
    out: list[Sample] = []
    t0 = time.perf_counter()
    for t in range(turns):
        request: dict[str, Any] = {"model": "fast", "input": f"turn {t}"}
        if prev is not None:
            request["previous_response_id"] = prev
        sample = await timed(conn, post(port, "/v1/responses", request), keep=True)
        prev = check_response(sample)["id"]
        sample.body = prev.encode()
        out.append(sample)
        if turns >= 100 and (t + 1) % 200 == 0:
            print(
                f"  {label}: {t + 1}/{turns} turns, {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return out


def new_turn(port: int, previous: str) -> bytes:
    body = {"model": "fast", "input": "next turn", "previous_response_id": previous}
    return post(port, "/v1/responses", {**body, "store": False})


def direct_chat(port: int, turns: int) -> bytes:
    body = {
        "model": "fast",
        "messages": chat_messages(turns, "next turn"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return post(port, CHAT, body)


async def warm_phase(
    cfg: E2EConfig, up: int, ours: int, short_tip: str, long_tip: str, pid: int
) -> dict[str, Any]:
    """(a), (b) and their direct upstream calls at c1, alternating rounds."""
    payloads = {
        "a": (ours, new_turn(ours, short_tip)),
        "b": (ours, new_turn(ours, long_tip)),
        "direct_a": (up, direct_chat(up, 1)),
        "direct_b": (up, direct_chat(up, cfg.turns)),
    }
    conns = {name: await overhead.connect(port) for name, (port, _) in payloads.items()}
    try:
        for name, (_, payload) in payloads.items():  # verify, then warm up
            sample = await timed(conns[name], payload, keep=True)
            if name.startswith("direct"):
                check_chat_stream(sample)
            else:
                check_response(sample)
            for _ in range(cfg.warm):
                await timed(conns[name], payload)
        samples: dict[str, list[Sample]] = {name: [] for name in payloads}
        cpu_used = dict.fromkeys(payloads, 0.0)
        cpu = overhead.CPU({"ours": pid})
        per_round = max(1, cfg.n // cfg.rounds)
        for _ in range(cfg.rounds):
            for name, (_, payload) in payloads.items():
                cpu.start()
                for _ in range(per_round):
                    samples[name].append(await timed(conns[name], payload))
                cpu_used[name] += cpu.used()["ours"]
    finally:
        for conn in conns.values():
            conn.close()
    return {
        name: {
            "n": len(s),
            "p50": pct([x.latency for x in s], 0.5),
            "p99": pct([x.latency for x in s], 0.99),
            "ours_cpu_per_req": cpu_used[name] / len(s),
            "body_bytes": len(payloads[name][1]),
        }
        for name, s in samples.items()
    }


async def cold_phase(
    cfg: E2EConfig, ours: int, short_tips: list[str], long_tips: list[str]
) -> dict[str, Any]:
    """Right after a restart: each request is the first on its chain tip (a cache miss).
    Long and short tips alternate, a long one first; each tip is then asked once more
    (now cached)."""
    conn = await overhead.connect(ours)
    try:
        warmup = post(ours, "/v1/responses", {"model": "fast", "input": "hi", "store": False})
        for _ in range(5):  # the process and its upstream connection, not any chain
            check_response(await timed(conn, warmup, keep=True))
        cold: dict[str, list[float]] = {"b": [], "a": []}
        again: dict[str, list[float]] = {"b": [], "a": []}
        for long_tip, short_tip in zip(long_tips, short_tips, strict=True):
            for name, tip in (("b", long_tip), ("a", short_tip)):
                payload = new_turn(ours, tip)
                sample = await timed(conn, payload, keep=True)
                check_response(sample)
                cold[name].append(sample.latency)
                again[name].append((await timed(conn, payload)).latency)
    finally:
        conn.close()
    return {"cold": cold, "again": again}


async def e2e_bench(cfg: E2EConfig, tmpdir: Path, procs: list[subprocess.Popen[bytes]]) -> Any:
    up, ours_port = overhead.free_port(), overhead.free_port()
    upstream = overhead.start_upstream(tmpdir, up, 16, procs)
    ours = overhead.start_responsed(tmpdir, up, ours_port, procs)
    print(
        f"upstream pid {upstream.pid} port {up}; responsed pid {ours.pid} port {ours_port}",
        file=sys.stderr,
        flush=True,
    )
    res: dict[str, Any] = {"rss_mb": {"start": overhead.rss_mb(ours.pid)}}
    conn = await overhead.connect(ours_port)
    try:
        shorts = [await build_chain(conn, ours_port, 1, "1-turn") for _ in range(cfg.cold + 1)]
        t0 = time.perf_counter()
        long = await build_chain(conn, ours_port, cfg.turns, f"{cfg.turns}-turn chain")
        build_s = time.perf_counter() - t0
    finally:
        conn.close()
    res["rss_mb"]["after_build"] = overhead.rss_mb(ours.pid)
    head = [s.latency for s in long[:50]]
    tail = [s.latency for s in long[-50:]]
    res["build"] = {
        "seconds": build_s,
        "first50_p50": pct(head, 0.5),
        "last50_p50": pct(tail, 0.5),
    }
    short_ids = [chain[-1].body.decode() for chain in shorts]
    long_ids = [s.body.decode() for s in long]
    res["warm"] = await warm_phase(cfg, up, ours_port, short_ids[0], long_ids[-1], ours.pid)
    overhead.print_progress("warm (a)/(b)", res["warm"])
    res["rss_mb"]["after_warm"] = overhead.rss_mb(ours.pid)

    overhead.stop(ours)  # restart on the same data dir: the context cache is empty
    procs.remove(ours)
    ours_port = overhead.free_port()
    ours = overhead.start_responsed(tmpdir, up, ours_port, procs)
    long_tips = long_ids[::-1][: cfg.cold]  # turns T, T-1, …: each a full-length miss
    res["cold"] = await cold_phase(cfg, ours_port, short_ids[1:], long_tips)
    overhead.print_progress("cold (c)", res["cold"])
    res["rss_mb"]["after_cold"] = overhead.rss_mb(ours.pid)
    return res


def ratio(x: float, y: float) -> float:
    return x / y if y > 0 else float("nan")


def verdict(r: float) -> str:
    return overhead.verdict(r <= TARGET_RATIO)


def e2e_report(res: dict[str, Any], cfg: E2EConfig) -> str:
    w, cold, again = res["warm"], res["cold"]["cold"], res["cold"]["again"]
    a, b, da, db = w["a"], w["b"], w["direct_a"], w["direct_b"]
    n_long = 2 * cfg.turns + 1
    warm_ratio = ratio(b["p50"], a["p50"])
    gw_warm = ratio(b["p50"] - db["p50"], a["p50"] - da["p50"])
    cpu_ratio = ratio(b["ours_cpu_per_req"], a["ours_cpu_per_req"])
    kb = 1024
    lines = [
        f"## end to end, warm: a new turn on a cached chain (c1, n={a['n']} each,"
        f" {cfg.rounds} alternating rounds, `store: false`)",
        "| request | messages upstream | upstream body KB | p50 ms | p99 ms |"
        " responsed CPU/req µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = (
        ("(a) responsed, new turn on a 1-turn chain", a, 3, w["direct_a"]["body_bytes"]),
        (f"(b) responsed, new turn on the {cfg.turns}-turn chain", b, n_long, db["body_bytes"]),
        ("direct upstream, (a)'s Chat Completions request", da, 3, da["body_bytes"]),
        ("direct upstream, (b)'s Chat Completions request", db, n_long, db["body_bytes"]),
    )
    for label, row, n_msgs, size in rows:
        cpu = f"{row['ours_cpu_per_req'] * 1e6:.0f}" if label.startswith("(") else "-"
        lines.append(
            f"| {label} | {n_msgs} | {size / kb:.1f} | {ms(row['p50'])} | {ms(row['p99'])}"
            f" | {cpu} |"
        )
    lines += [
        "",
        f"(b)/(a) at p50: {warm_ratio:.2f}x (target ≤ {TARGET_RATIO}x: {verdict(warm_ratio)});"
        f" at p99: {ratio(b['p99'], a['p99']):.2f}x",
        f"gateway only, ((b) - direct_{n_long}) / ((a) - direct_3) at p50:"
        f" {ms(b['p50'] - db['p50'])} / {ms(a['p50'] - da['p50'])} ms = {gw_warm:.2f}x"
        f" (target ≤ {TARGET_RATIO}x: {verdict(gw_warm)})",
        f"responsed CPU per request (b)/(a): {cpu_ratio:.2f}x",
        "",
    ]
    cb, ca = cold["b"], cold["a"]
    med_b, med_a = statistics.median(cb), statistics.median(ca)
    gw_first = ratio(cb[0] - db["p50"], ca[0] - da["p50"])
    gw_cold = ratio(med_b - db["p50"], med_a - da["p50"])
    lines += [
        f"## end to end, cold (c): after restarting responsed on the same data dir"
        f" (n={len(cb)} tips of each kind, alternating, the {cfg.turns}-turn one first)",
        "| request | first after restart ms | median ms | max ms |"
        " same tip again (cached) median ms |",
        "|---|---:|---:|---:|---:|",
        f"| new turn on a {cfg.turns}-turn chain tip, cache miss | {ms(cb[0])} |"
        f" {ms(med_b)} | {ms(max(cb))} | {ms(statistics.median(again['b']))} |",
        f"| new turn on a 1-turn chain, cache miss | {ms(ca[0])} | {ms(med_a)} |"
        f" {ms(max(ca))} | {ms(statistics.median(again['a']))} |",
        "",
        f"cold {cfg.turns}-turn / cold 1-turn: first {ratio(cb[0], ca[0]):.2f}x,"
        f" median {ratio(med_b, med_a):.2f}x (target ≤ {TARGET_RATIO}x:"
        f" {verdict(ratio(med_b, med_a))})",
        f"gateway only (minus the warm direct p50s above): first {gw_first:.2f}x,"
        f" median {gw_cold:.2f}x (target ≤ {TARGET_RATIO}x: {verdict(gw_cold)})",
        "",
        f"building the {cfg.turns}-turn chain (store: true, c1): {res['build']['seconds']:.1f} s;"
        f" p50 per turn: first 50 turns {ms(res['build']['first50_p50'])} ms,"
        f" last 50 {ms(res['build']['last50_p50'])} ms",
        "responsed RSS MB: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in res["rss_mb"].items())
        + " (after cold = the restarted process)",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


async def run_e2e(cfg: E2EConfig) -> tuple[Any, dict[str, Any]]:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="responsed-chain-") as tmp:
        try:
            res = await asyncio.wait_for(e2e_bench(cfg, Path(tmp), procs), cfg.deadline)
        finally:
            for proc in reversed(procs):
                overhead.stop(proc)
    return res, {"loadavg_after": overhead.load_average()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200-turn chain, fewer requests")
    parser.add_argument("--runs", type=int, help="store level repetitions (51; quick 11)")
    parser.add_argument("--turns", type=int, help="long chain length (1000; quick 200)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--store-only", action="store_true", help="skip the end-to-end phase")
    only.add_argument("--e2e-only", action="store_true", help="skip the store-level phase")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()

    cfg = QUICK_E2E if args.quick else FULL_E2E
    if args.turns:
        cfg.turns = args.turns
    runs = args.runs or (11 if args.quick else 51)
    # SIGTERM -> SystemExit, so the `finally` in run_e2e stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    noise = overhead.busy_processes({os.getpid()})
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": overhead.cpu_model(),
        "noise_before": noise,
        "loadavg_before": overhead.load_average(),
    }
    if noise:
        print(f"WARNING: machine not idle, results will be noisy: {noise}", file=sys.stderr)
    out: dict[str, Any] = {"info": info}
    sections = []
    if not args.e2e_only:
        out["store"] = asyncio.run(store_bench(runs, cfg.turns))
        sections.append(store_report(out["store"]))
    if not args.store_only:
        import uvloop

        out["e2e"], after = uvloop.run(run_e2e(cfg))
        info.update(after)
        sections.append(e2e_report(out["e2e"], cfg))
    else:
        info["loadavg_after"] = overhead.load_average()
    head = [
        f"responsed chain bench ({'quick' if args.quick else 'full'} run, {info['date']},"
        f" {HOST} only)",
        f"machine: {info['nproc']} CPUs ({info['cpu']}); other busy processes at start:"
        f" {', '.join(noise) or 'none'}; 1-min load average before"
        f" {info['loadavg_before']:.2f}, after {info['loadavg_after']:.2f}",
    ]
    print("\n\n".join(["\n".join(head), *sections]), flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
