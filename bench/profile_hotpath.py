"""Profile responsed with py-spy under the overhead bench's load.

Starts the same upstream and responsed as `bench/overhead.py`, drives one load shape
against responsed while `py-spy record` samples it, and prints the hottest frames by
self time and by inclusive time (responsed + library frames).

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_hotpath.py [--load c1|c1-nostore|c64|stream]
        [--seconds S] [--out /tmp/responsed.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead

LOADS = {  # load name -> (target name, concurrency)
    "c1": ("ours", 1),
    "c1-nostore": ("ours_nostore", 1),
    "c64": ("ours", 64),
    "stream": ("ours_stream", 32),
}


async def drive(load: str, up: int, ours: int, seconds: float) -> int:
    target_name, concurrency = LOADS[load]
    target = overhead.make_targets(up, ours, 256)[target_name]
    await overhead.verify(target)
    conns = [await overhead.connect(ours) for _ in range(concurrency)]
    deadline = time.perf_counter() + seconds
    count = 0

    async def worker(conn: overhead.HTTPClient) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await conn.request(target.payload, target.marker)
            count += 1

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return count


def _package(frame: str) -> str:
    """`func (pkg/mod.py:12)` -> `pkg` (the stdlib module for stdlib frames)."""
    where = frame.rpartition(" (")[2]
    return where.split("/", 1)[0].split(".py", 1)[0]


def summarize(collapsed: Path, top: int) -> str:
    """Top frames from py-spy's collapsed stacks (`thread;a;b;c count`)."""
    threads: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    main = 0
    for line in collapsed.read_text().splitlines():
        stack, _, raw = line.rpartition(" ")
        count = int(raw)
        thread, *frames = stack.split(";")
        threads[thread.partition(": ")[2] or thread] += count
        if not frames or "MainThread" not in thread:
            continue
        main += count
        self_time[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = sum(threads.values())
    out = [f"{total} samples (non-idle), by thread:"]
    out += [f"{100 * n / total:6.1f}%  {name}" for name, n in threads.most_common()]
    out.append(
        "\nMain thread only (the event loop); `Runner.run` self time is uvloop's C code"
        " (I/O, callbacks) and time waiting for the GIL outside Python frames."
    )
    tables = (("self time by package", packages), ("self", self_time), ("inclusive", inclusive))
    for title, counter in tables:
        out.append(f"\n-- top {top} by {title} --")
        for frame, n in counter.most_common(top):
            out.append(f"{100 * n / main:6.1f}%  {frame}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", choices=sorted(LOADS), default="c1")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("/tmp/responsed-profile.txt"))
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    py_spy = Path(sys.executable).with_name("py-spy")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="responsed-prof-") as tmp:
        tmpdir = Path(tmp)
        try:
            up_port, our_port = overhead.free_port(), overhead.free_port()
            _, ours = overhead.start_servers(tmpdir, up_port, our_port, 256, procs)
            spy = subprocess.Popen(
                [str(py_spy), "record", "--pid", str(ours.pid), "--rate", str(args.rate),
                 "--duration", str(int(args.seconds)), "--format", "raw", "--threads",
                 "-o", str(args.out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            procs.append(spy)
            time.sleep(1.0)  # let py-spy attach
            count = uvloop.run(drive(args.load, up_port, our_port, args.seconds - 1.5))
            spy.wait(60)
            print(f"{args.load}: {count} requests in {args.seconds - 1.5:.1f} s; pid {ours.pid}")
            print(f"collapsed stacks: {args.out}")
            print(summarize(args.out, args.top))
        finally:
            for proc in reversed(procs):
                overhead.stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
