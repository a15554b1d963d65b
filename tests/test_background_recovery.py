"""A server killed with SIGKILL while background jobs run and wait: the next process
ends every one of them, and every event log stays gapless and well-formed."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from conftest import free_port
from responsed.testing import assert_valid_event_stream
from scripted_upstream import ScriptedUpstream, Turn
from wire import parse_sse

RESPONSED = Path(sys.executable).parent / "responsed"
SLOW = " ".join(f"w{i}" for i in range(400))  # ~40 s at 0.1 s a chunk: never finishes here


class HookReceiver:
    """A webhook endpoint on loopback that refuses the first `refuse` deliveries (500)
    and verifies every accepted one with the openai SDK."""

    def __init__(self, refuse: int) -> None:
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.sdk = OpenAI(api_key="x", webhook_secret=self.secret, base_url="http://127.0.0.1:9")
        self.refuse = refuse
        self.attempts: list[str] = []  # webhook-id of every attempt
        self.events: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts.append(self.headers["webhook-id"])
                if receiver.refuse > 0:
                    receiver.refuse -= 1
                    self.send_response(500)
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.events.append(receiver.sdk.webhooks.unwrap(body, headers))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.sdk.close()


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    receiver = HookReceiver(refuse=2)
    yield receiver
    receiver.close()


def write_config(root: Path, upstream_url: str, recovery: str, hooks: HookReceiver) -> Path:
    config = root / "responsed.toml"
    config.write_text(
        f"""
builtin_model = false
background_recovery = "{recovery}"
background_lease_seconds = 1.0
webhook_backoff_seconds = 0.2

[[webhooks]]
url = "{hooks.url}"
secret = "{hooks.secret}"

[[models]]
name = "scripted"
engine = "openai"
base_url = "{upstream_url}"
upstream_model = "scripted"

[[models]]
name = "scripted-serial"
engine = "openai"
base_url = "{upstream_url}"
upstream_model = "scripted"
background_concurrency = 1
"""
    )
    return config


@contextmanager
def serve(config: Path, data_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [str(RESPONSED), "serve", "--config", str(config), "--data-dir", str(data_dir)]
    proc = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def create(base: str, model: str, text: str) -> str:
    body = {"model": model, "input": text, "background": True}
    reply = httpx.post(f"{base}/responses", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "queued"
    response_id: str = reply.json()["id"]
    return response_id


def events(base: str, response_id: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{base}/responses/{response_id}", params={"stream": "true"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return parse_sse(reply.text)


def wait_for_deltas(base: str, response_id: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        with httpx.Client(timeout=5) as http:
            reply = http.get(f"{base}/responses/{response_id}")
        if reply.json()["status"] == "in_progress":
            with (
                httpx.Client(timeout=30) as http,
                http.stream(
                    "GET", f"{base}/responses/{response_id}", params={"stream": "true"}
                ) as stream,
            ):
                seen = 0
                for line in stream.iter_lines():
                    seen += line.startswith("event: response.output_text.delta")
                    if seen >= count:
                        return
        assert time.monotonic() < deadline, "no deltas were produced"
        time.sleep(0.05)


def wait_all_terminal(base: str, ids: list[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    final: dict[str, Any] = {}
    while len(final) < len(ids):
        for response_id in ids:
            body = httpx.get(f"{base}/responses/{response_id}", timeout=5).json()
            if body["status"] in ("completed", "failed", "incomplete", "cancelled"):
                final[response_id] = body
        assert time.monotonic() < deadline, f"not terminal: {set(ids) - set(final)}"
        time.sleep(0.1)
    return final


@pytest.mark.parametrize("recovery", ["fail", "restart"])
def test_sigkill_with_running_and_queued_jobs(
    tmp_path: Path, scripted: ScriptedUpstream, hooks: HookReceiver, recovery: str
) -> None:
    config = write_config(tmp_path, scripted.base_url, recovery, hooks)
    data = tmp_path / "data"
    scripted.enqueue(*[Turn(content=SLOW, delay=0.1) for _ in range(2)])
    with serve(config, data) as (base, proc):
        running = [create(base, "scripted", "one"), create(base, "scripted-serial", "two")]
        queued = [create(base, "scripted-serial", "three"), create(base, "scripted-serial", "4")]
        for response_id in running:
            wait_for_deltas(base, response_id, 3)
        for response_id in queued:
            assert httpx.get(f"{base}/responses/{response_id}").json()["status"] == "queued"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    scripted.reset()  # what the next process's runs get: short answers
    scripted.enqueue(*[Turn(content=f"answer {i}") for i in range(4)])
    with serve(config, data) as (base, _):
        final = wait_all_terminal(base, running + queued)
        for response_id in queued:
            assert final[response_id]["status"] == "completed"
        for response_id in running:
            body = final[response_id]
            if recovery == "fail":
                assert body["status"] == "failed"
                assert body["error"]["code"] == "server_error"
                assert "stopped" in body["error"]["message"]
                # What was streamed before the crash is kept, closed as incomplete.
                item = body["output"][0]
                assert item["status"] == "incomplete"
                assert SLOW.startswith(item["content"][0]["text"])
                assert item["content"][0]["text"]
            else:
                assert body["status"] == "completed"
                assert body["output"][0]["content"][0]["text"].startswith("answer")
        for response_id in running + queued:
            log = events(base, response_id)
            final_event = assert_valid_event_stream(log)  # gapless, well-formed, terminal
            assert final_event is not None
            assert final_event["status"] == final[response_id]["status"]
            assert final_event["output"] == final[response_id]["output"]
        # One verified webhook per job, the refused deliveries retried with the same id.
        deadline = time.monotonic() + 30
        while len(hooks.events) < len(running + queued):
            assert time.monotonic() < deadline, f"webhooks: {hooks.events}"
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more arrives
        assert sorted(e.data.id for e in hooks.events) == sorted(running + queued)
        for event in hooks.events:
            assert event.type == f"response.{final[event.data.id]['status']}"
            assert event.object == "event"
        assert len(hooks.attempts) == len(hooks.events) + 2
        refused = hooks.attempts[:2]
        assert set(refused) <= {e.id for e in hooks.events}  # retried, not re-made
