"""`[n]` markers in streamed answer text → citations of the n-th source.

The model is shown numbered search results and asked to cite them as `[1]` or `[1, 2]`.
Markers are taken out of the text, split across deltas or not; a `Citation` takes
their place, so the annotation's `index` is where the marker stood. Spaces right before
a marker are held back and dropped with it ("blue [1]." reads "blue.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from responsed.engines.base import TextDelta
from responsed.tools.base import Source

__all__ = ["Citation", "CitationFilter"]

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_PARTIAL = re.compile(r"\[[\d,\s]{0,16}")  # what a marker cut by a delta boundary looks like


@dataclass(frozen=True, slots=True)
class Citation:
    file_id: str
    filename: str


class CitationFilter:
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.cited = 0
        self._held = ""

    def feed(self, delta: TextDelta) -> list[TextDelta | Citation]:
        text = self._held + delta.text
        self._held = ""
        if "[" not in text and not text.endswith(" "):
            return [delta] if text is delta.text else [TextDelta(text)]
        out: list[TextDelta | Citation] = []
        plain: list[str] = []
        i = 0
        while i < len(text):
            j = text.find("[", i)
            if j < 0:
                plain.append(text[i:])
                break
            plain.append(text[i:j])
            marker = _MARKER.match(text, j)
            if marker is not None:
                cites = self._citations(marker.group(1))
                if cites:
                    _emit(out, "".join(plain).rstrip(" "))
                    plain = []
                    out.extend(cites)
                else:
                    plain.append(marker.group(0))  # not a source number: plain text
                i = marker.end()
                continue
            if _PARTIAL.fullmatch(text, j):
                self._held = text[j:]
                break
            plain.append("[")
            i = j + 1
        rest = "".join(plain)
        kept = rest.rstrip(" ")  # spaces wait: a marker may follow and take them
        self._held = rest[len(kept) :] + self._held
        _emit(out, kept)
        return out

    def flush(self) -> list[TextDelta | Citation]:
        held, self._held = self._held, ""
        return [TextDelta(held)] if held else []

    def _citations(self, numbers: str) -> list[TextDelta | Citation]:
        cites: list[TextDelta | Citation] = []
        for number in numbers.split(","):
            n = int(number)
            if 1 <= n <= len(self.sources):
                source = self.sources[n - 1]
                cites.append(Citation(source.file_id, source.filename))
        self.cited += len(cites)
        return cites


def _emit(out: list[TextDelta | Citation], text: str) -> None:
    if text:
        out.append(TextDelta(text))
