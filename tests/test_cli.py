"""`responsed serve`: one-line errors for bad set-ups, and a real start-up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port

RESPONSED = Path(sys.executable).parent / "responsed"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RESPONSED), "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("responsed: error: ")
    return lines[0]


def test_bad_toml(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[[models]\nname = ")
    assert "not valid TOML" in one_error_line(run_cli("--config", str(config)))


def test_missing_config_file(tmp_path: Path) -> None:
    line = one_error_line(run_cli("--config", str(tmp_path / "absent.toml")))
    assert "config file not found" in line


def test_invalid_config_values(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[models]]\nname = "x"\nengine = "openai"\ncolour = "blue"\n')
    assert "invalid configuration at models.0" in one_error_line(run_cli("--config", str(config)))


def test_unknown_engine(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[models]]\nname = "x"\nengine = "quantum"\n')
    line = one_error_line(run_cli("--config", str(config), "--port", str(free_port())))
    assert "unknown engine 'quantum'" in line


def test_missing_model_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[models]]\nname = "x"\nengine = "llamacpp"\npath = "/nonexistent.gguf"\n')
    line = one_error_line(run_cli("--config", str(config), "--port", str(free_port())))
    assert "model file not found: /nonexistent.gguf" in line


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(run_cli("--port", str(port), "--data-dir", str(tmp_path)))
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_public_bind_needs_keys(tmp_path: Path) -> None:
    line = one_error_line(run_cli("--host", "0.0.0.0", "--data-dir", str(tmp_path)))
    assert "api_keys" in line


def test_serves_with_api_keys(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RESPONSED_PORT": str(port), "RESPONSED_API_KEYS": "k-one,k-two"}
    proc = subprocess.Popen(
        [str(RESPONSED), "serve", "--data-dir", str(tmp_path / "d")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.1)
        denied = httpx.get(f"{base}/v1/models", timeout=5)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"
        wrong = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        create = httpx.post(f"{base}/v1/responses", json={"model": "smollm2", "input": "x"})
        assert create.status_code == 401
        assert create.json()["error"]["code"] == "invalid_api_key"
        ok = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer k-two"})
        assert [m["id"] for m in ok.json()["data"]] == ["smollm2"]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "model smollm2 (llamacpp:" in stderr
    assert f"data in {tmp_path / 'd'}" in stderr


@pytest.mark.parametrize("flag", ["--help"])
def test_help(flag: str) -> None:
    result = run_cli(flag)
    assert result.returncode == 0
    assert "--data-dir" in result.stdout
