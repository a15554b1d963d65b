"""Seed 001 drives the API through `AzureOpenAI` (an `api-version` query parameter on
every call); pointed at responsed by `base_url`, its calls work unchanged."""

from __future__ import annotations

import time

import httpx
from openai import AzureOpenAI

from conftest import RunningServer
from scripted_upstream import ScriptedUpstream, Turn
from wire import ValidatingTransport


def test_azure_client_background_poll_and_cancel(
    server: RunningServer, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(content="a long story"))
    client = AzureOpenAI(
        base_url=server.base_url + "/",
        api_key="unused",
        api_version="preview",
        max_retries=0,
        http_client=httpx.Client(transport=ValidatingTransport(), timeout=60),
    )
    with client:
        response = client.responses.create(
            model="scripted", input="Write me a very long story", background=True
        )
        assert response.status == "queued"
        deadline = time.monotonic() + 30
        while response.status in {"queued", "in_progress"}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
            response = client.responses.retrieve(response.id)
        assert response.status == "completed"
        assert response.output_text == "a long story"
        assert client.responses.cancel(response.id).status == "completed"
        stream = client.responses.create(
            model="scripted", input="Write me a very long story", background=True, stream=True
        )
        cursor = None
        for event in stream:
            cursor = event.sequence_number
        assert cursor is not None and cursor > 3
