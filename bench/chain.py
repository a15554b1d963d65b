"""Cost of rebuilding a `previous_response_id` chain from the SQLite store.

Builds a 1-turn and a 1000-turn chain (one input and one output message per turn) in a
temporary store and prints the median `chain_items` time of each and their ratio. The
1000-turn chain returns 1000x the items, so its time grows with the item count; what the
store guarantees is one query regardless of length. Also prints put+get latency of a
typical response, the store's share of the request hot path.

    python bench/chain.py [--runs N] [--turns T]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from responsed.store.base import DEFAULT_PROJECT, ResponseRecord
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from responsed.store.base import DEFAULT_PROJECT, ResponseRecord
from responsed.store.sqlite import SQLiteResponseStore


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


async def build_chain(store: SQLiteResponseStore, prefix: str, turns: int) -> str:
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


def quantile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))]


async def main(runs: int, turns: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteResponseStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        try:
            one = await build_chain(store, "one", 1)
            long = await build_chain(store, "long", turns)
            await median_chain_time(store, long, 3)  # warm the page cache
            t1 = await median_chain_time(store, one, runs)
            tn = await median_chain_time(store, long, runs)
            print(f"chain_items   1 turn  (2 items):    {t1 * 1e6:9.1f} µs  (median of {runs})")
            print(f"chain_items {turns} turns ({2 * turns} items): {tn * 1e6:9.1f} µs")
            print(
                f"ratio {turns}-turn / 1-turn: {tn / t1:.1f}x,"
                f" per item: {tn / (2 * turns) * 1e6:.2f} µs"
            )

            lat = []
            for i in range(2000):
                rec = record(f"resp_pg_{i}", None)
                start = time.perf_counter()
                await store.put_response(rec)
                await store.get_response(DEFAULT_PROJECT, rec.id)
                lat.append(time.perf_counter() - start)
            p50, p99 = quantile(lat, 0.5) * 1e6, quantile(lat, 0.99) * 1e6
            print(f"put_response + get_response: p50 {p50:.0f} µs, p99 {p99:.0f} µs (n=2000)")
        finally:
            await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=51)
    parser.add_argument("--turns", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.turns))
