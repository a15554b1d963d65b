"""Shared fixtures: a real server on a loopback port, driven by the official SDK."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from openai import AsyncOpenAI, OpenAI

sys.path.insert(0, str(Path(__file__).parent))

from responsed.api.app import create_app
from responsed.config import Settings, builtin_model_path, load_settings
from scripted_upstream import ScriptedUpstream
from wire import async_sdk_client, sdk_client


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a full run, rewrite the conformance report; fail on lost coverage."""
    config = session.config
    partial = config.args != [str(config.rootpath / "tests")] and config.args != ["tests"]
    if partial or config.option.keyword or config.option.markexpr or exitstatus != 0:
        return
    from conformance import update

    lost = update()
    if lost:
        print(f"\nconformance regression: no longer covered: {', '.join(lost)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    base_url: str
    root_url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: Settings) -> RunningServer:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    root = f"http://{settings.host}:{settings.port}"
    return RunningServer(f"{root}/v1", root, settings, server, thread)


def write_config(path: Path, upstream_url: str, dead_url: str) -> Path:
    path.write_text(
        f"""
[[models]]
name = "scripted"
engine = "openai"
base_url = "{upstream_url}"
api_key = "none"

[[models]]
name = "scripted-vision"
engine = "openai"
base_url = "{upstream_url}"
upstream_model = "scripted"
vision = true

[[models]]
name = "scripted-serial"  # background jobs one at a time: the rest wait queued
engine = "openai"
base_url = "{upstream_url}"
upstream_model = "scripted"
background_concurrency = 1

[[models]]
name = "scripted-window"
engine = "openai"
base_url = "{upstream_url}"
upstream_model = "scripted"
context_window = 200

[[models]]
name = "scripted-effort"
engine = "openai"
base_url = "{upstream_url}"
upstream_model = "scripted"
reasoning_effort_param = "reasoning_effort"
thinking_flag = "enable_thinking"
reasoning_visibility = "hidden"

[[models]]
name = "smollm2-think"
engine = "llamacpp"
path = "{builtin_model_path()}"
n_ctx = 2048
reasoning_parser = "think_tags_open"  # all it writes is reasoning: it never closes

[[models]]
name = "unreachable"
engine = "openai"
base_url = "{dead_url}"
timeout = 5
"""
    )
    return path


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server running the built-in GGUF."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(builtin_model_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"llama_cpp.server exited:\n{log.read().decode()[-3000:]}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not answer /v1/models within 60 s")
                time.sleep(0.2)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as scripted:
        yield scripted


@pytest.fixture
def scripted(upstream: ScriptedUpstream) -> ScriptedUpstream:
    upstream.reset()
    return upstream


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("server")
    config = write_config(
        root / "responsed.toml", upstream.base_url, f"http://127.0.0.1:{free_port()}/v1"
    )
    settings = load_settings(config, host="127.0.0.1", port=free_port(), data_dir=root / "data")
    running = start_server(settings)
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[OpenAI]:
    """The official SDK; every Response and event stream it receives is validated."""
    with sdk_client(server.base_url) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    async with async_sdk_client(server.base_url) as sdk:
        yield sdk


def pytest_unconfigure(config: pytest.Config) -> None:
    """llama-cpp-python opens two /dev/null files at import and never closes them, which
    Python reports as ResourceWarnings at exit; close them once every model is freed."""
    del config
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
