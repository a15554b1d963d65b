"""`input_file` parts: by file_id and by file_data, rendered as text for the model."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from openai import OpenAI

from scripted_upstream import ScriptedUpstream


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF, one line of Helvetica text per page."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


def _ask(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def _question() -> dict[str, Any]:
    return {"type": "input_text", "text": "What does the file say?"}


def _sent_text(scripted: ScriptedUpstream, index: int = -1) -> str:
    content = scripted.requests[index]["messages"][-1]["content"]
    assert isinstance(content, str)
    return content


def test_file_id_text_file(client: OpenAI, scripted: ScriptedUpstream) -> None:
    uploaded = client.files.create(
        file=("notes.md", b"# Notes\nThe secret word is PINEAPPLE.\n"), purpose="user_data"
    )
    part = {"type": "input_file", "file_id": uploaded.id}
    response = client.responses.create(model="scripted", input=_ask(_question(), part))
    assert response.status == "completed"
    sent = _sent_text(scripted)
    assert sent == (
        "What does the file say?\n\n[file: notes.md]\n# Notes\nThe secret word is PINEAPPLE.\n"
    )
    # The stored input keeps the part as given, never the extracted text.
    items = client.responses.input_items.list(response.id).data
    stored = items[0].model_dump(exclude_none=True)["content"]
    assert stored[1] == {"type": "input_file", "file_id": uploaded.id}
    assert "PINEAPPLE" not in str(stored)


def test_file_data_pdf(client: OpenAI, scripted: ScriptedUpstream) -> None:
    pdf = make_pdf(["Hello from page one", "Goodbye from page two"])
    data_url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    part = {"type": "input_file", "file_data": data_url, "filename": "report.pdf"}
    response = client.responses.create(model="scripted", input=_ask(part, _question()))
    assert response.status == "completed"
    assert _sent_text(scripted) == (
        "[file: report.pdf]\n--- page 1 ---\nHello from page one\n"
        "--- page 2 ---\nGoodbye from page two\n\nWhat does the file say?"
    )
    stored = client.responses.input_items.list(response.id).data[0].model_dump()["content"]
    assert stored[0]["file_data"] == data_url


def test_uploaded_pdf_and_raw_base64(client: OpenAI, scripted: ScriptedUpstream) -> None:
    pdf = make_pdf(["Quarterly numbers went up"])
    uploaded = client.files.create(file=("q3.pdf", pdf), purpose="user_data")
    client.responses.create(
        model="scripted", input=_ask({"type": "input_file", "file_id": uploaded.id})
    )
    assert _sent_text(scripted) == "[file: q3.pdf]\n--- page 1 ---\nQuarterly numbers went up"
    raw = base64.b64encode(pdf).decode()  # no data URL, no filename: sniffed as a PDF
    client.responses.create(model="scripted", input=_ask({"type": "input_file", "file_data": raw}))
    assert "Quarterly numbers went up" in _sent_text(scripted)


def test_text_file_data_csv(client: OpenAI, scripted: ScriptedUpstream) -> None:
    csv = b"city,temp\nOslo,3\nRome,19\n"
    part = {
        "type": "input_file",
        "filename": "temps.csv",
        "file_data": "data:text/csv;base64," + base64.b64encode(csv).decode(),
    }
    client.responses.create(model="scripted", input=_ask(part))
    assert _sent_text(scripted) == "[file: temps.csv]\ncity,temp\nOslo,3\nRome,19\n"


@pytest.mark.parametrize(
    ("part", "message", "param"),
    [
        (
            {"type": "input_file", "filename": "bad.pdf", "file_data": base64.b64encode(
                b"%PDF-1.4\nthis is not a pdf at all"
            ).decode()},
            "PDF",
            "input[0].content[0]",
        ),
        (
            {"type": "input_file", "filename": "pic.png", "file_data": "data:image/png;base64,"
             + base64.b64encode(b"\x89PNG\r\n\x1a\n....").decode()},
            "Unsupported file type: image/png",
            "input[0].content[0]",
        ),
        (
            {"type": "input_file", "file_url": "https://example.com/a.pdf"},
            "file_url inputs are not enabled on this server",
            "input[0].content[0]",
        ),
        (
            {"type": "input_file", "filename": "x.txt", "file_data": "not base64!"},
            "base64",
            "input[0].content[0].file_data",
        ),
        ({"type": "input_file"}, "file_id", "input[0].content[0]"),
    ],
)  # fmt: skip
def test_refused_parts(client: OpenAI, part: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="scripted", input=_ask(part))
    assert message in caught.value.message
    assert caught.value.param == param


def test_unknown_file_id(client: OpenAI) -> None:
    part = {"type": "input_file", "file_id": "file-doesnotexist"}
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="scripted", input=_ask(_question(), part))
    assert caught.value.message.endswith(" - No such File object: file-doesnotexist")
    assert caught.value.param == "input[0].content[1].file_id"


def test_chain_renders_files_again(client: OpenAI, scripted: ScriptedUpstream) -> None:
    uploaded = client.files.create(file=("fact.txt", b"Mars has two moons."), purpose="user_data")
    first = client.responses.create(
        model="scripted", input=_ask({"type": "input_file", "file_id": uploaded.id})
    )
    client.responses.create(model="scripted", input="And Venus?", previous_response_id=first.id)
    assert (
        scripted.requests[-1]["messages"][0]["content"] == "[file: fact.txt]\nMars has two moons."
    )
    # A deleted response clears the context cache: the chain is rendered from the store.
    throwaway = client.responses.create(model="scripted", input="x")
    client.responses.delete(throwaway.id)
    client.responses.create(model="scripted", input="And Earth?", previous_response_id=first.id)
    assert (
        scripted.requests[-1]["messages"][0]["content"] == "[file: fact.txt]\nMars has two moons."
    )
    # A file deleted later leaves a placeholder in the history, not an error.
    client.files.delete(uploaded.id)
    second = client.responses.create(model="scripted", input="x")
    client.responses.delete(second.id)
    client.responses.create(model="scripted", input="And Jupiter?", previous_response_id=first.id)
    assert (
        scripted.requests[-1]["messages"][0]["content"]
        == f"[file: {uploaded.id}] (no longer available)"
    )


def test_builtin_model_counts_file_tokens(client: OpenAI) -> None:
    text = "The meeting is on Tuesday at noon in room 4. Bring the quarterly report.\n"
    data = "data:text/plain;base64," + base64.b64encode(text.encode()).decode()
    question = {"type": "input_text", "text": "When is the meeting?"}
    with_file = _ask(question, {"type": "input_file", "filename": "memo.txt", "file_data": data})
    options: dict[str, Any] = {"model": "smollm2", "max_output_tokens": 16, "temperature": 0}
    plain = client.responses.create(input=_ask(question), **options)
    filed = client.responses.create(input=with_file, **options)
    assert plain.usage is not None
    assert filed.usage is not None
    assert filed.usage.input_tokens > plain.usage.input_tokens + 15
    counted = client.responses.input_tokens.count(model="smollm2", input=with_file)
    assert counted.input_tokens == filed.usage.input_tokens


def test_pdf_pages_as_images_for_a_vision_model(client: OpenAI, scripted: ScriptedUpstream) -> None:
    import base64
    import io

    from PIL import Image

    pdf = make_pdf(["Page one says hello.", "Page two says goodbye."])
    data_url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    part = {"type": "input_file", "file_data": data_url, "filename": "two.pdf"}
    client.responses.create(model="scripted-vision", input=_ask(_question(), part))
    content = scripted.requests[-1]["messages"][-1]["content"]
    kinds = [p["type"] for p in content]
    assert kinds == ["text", "text", "image_url", "image_url"]
    assert "Page two says goodbye." in content[1]["text"]
    for page in content[2:]:
        url = page["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert image.width > 100 and image.height > 100
    # A text-only model gets the text alone.
    client.responses.create(model="scripted", input=_ask(_question(), part))
    assert isinstance(scripted.requests[-1]["messages"][-1]["content"], str)
