"""Writing a bench's section of bench/RESULTS.md: each bench owns one `## ` section."""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESULTS", "write_section"]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, text: str, command: str, date: str) -> None:
    """Replace (or append) the section under `heading`: from it to the next `## `
    heading outside a code block."""
    section = f"{heading}\n\nCommand: `{command}` ({date})\n\n```\n{text}\n```\n"
    old = RESULTS.read_text().splitlines(keepends=True) if RESULTS.exists() else []
    begin = next((i for i, line in enumerate(old) if line.rstrip() == heading), None)
    if begin is None:
        head = "".join(old).rstrip("\n")
        RESULTS.write_text((head + "\n\n" if head else "") + section)
        return
    end, fenced = len(old), False
    for i in range(begin + 1, len(old)):
        if old[i].startswith("```"):
            fenced = not fenced
        elif not fenced and old[i].startswith("## "):
            end = i
            break
    rest = "".join(old[end:])
    RESULTS.write_text("".join(old[:begin]) + section + ("\n" + rest if rest else ""))
