"""`[n]` markers in streamed text become citations, however the text is cut."""

from __future__ import annotations

import random

import pytest

from responsed.engines.base import TextDelta
from responsed.runtime.citations import Citation, CitationFilter
from responsed.tools.base import Source

SOURCES = [Source("file-a", "a.txt"), Source("file-b", "b.txt")]


def render(chunks: list[str]) -> tuple[str, list[tuple[int, str]]]:
    """The text the client sees and (index, file_id) of each citation."""
    citations = CitationFilter(SOURCES)
    pieces: list[TextDelta | Citation] = []
    for chunk in chunks:
        pieces += citations.feed(TextDelta(chunk))
    pieces += citations.flush()
    text, cited = "", []
    for piece in pieces:
        if isinstance(piece, Citation):
            cited.append((len(text), piece.file_id))
        else:
            text += piece.text
    return text, cited


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "The sky is blue [1]. Grass is green [1, 2].",
            ("The sky is blue. Grass is green.", [(15, "file-a"), (31, "file-a"), (31, "file-b")]),
        ),
        (
            "Out of range [3] and [x] stay; [2]",
            ("Out of range [3] and [x] stay;", [(30, "file-b")]),
        ),
        ("No markers, trailing space ", ("No markers, trailing space ", [])),
        ("An open bracket at the end [", ("An open bracket at the end [", [])),
        ("[1]Leading", ("Leading", [(0, "file-a")])),
    ],
)
def test_markers(text: str, expected: tuple[str, list[tuple[int, str]]]) -> None:
    assert render([text]) == expected


@pytest.mark.parametrize("seed", range(20))
def test_any_cut_gives_the_same_result(seed: int) -> None:
    rng = random.Random(seed)
    text = "Alpha [1]. Beta  [2] gamma [1,2]! [7] delta [ 1] eps [12 zeta [2]"
    whole = render([text])
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 15)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert render(chunks) == whole, chunks
