"""The README's SDK examples run unchanged against a live server (only base_url differs)."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest

from conftest import RunningServer

README = Path(__file__).resolve().parents[1] / "README.md"


def sdk_example() -> str:
    text = README.read_text()
    section = text.split("## Using it from the `openai` SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_readme_examples_run(server: RunningServer) -> None:
    code = sdk_example().replace("http://127.0.0.1:8000/v1", server.base_url)
    scope: dict[str, object] = {}
    try:
        exec(compile(code, str(README), "exec"), scope)
        check_example_results(scope)
    finally:
        client = scope.get("client")
        if isinstance(client, openai.OpenAI):
            client.close()


def check_example_results(scope: dict[str, object]) -> None:
    client = scope["client"]
    assert isinstance(client, openai.OpenAI)
    answer = scope["answer"]
    assert answer.previous_response_id == scope["call_response"].id  # type: ignore[attr-defined]
    assert scope["outputs"], "the forced function call produced no call"
    assert scope["fetched"].id == answer.id  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(answer.id)  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(scope["ephemeral"].id)  # type: ignore[attr-defined]
    kinds = scope["kinds"]
    assert isinstance(kinds, list)
    assert kinds[0] == "response.created"
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert len(scope["history"].data) == 2  # type: ignore[attr-defined]
    assert scope["job"].status in ("completed", "incomplete")  # type: ignore[attr-defined]
    assert scope["cursor"] == 3
    parsed = scope["parsed"].output_parsed  # type: ignore[attr-defined]
    assert parsed is not None and parsed.name and isinstance(parsed.participants, list)
