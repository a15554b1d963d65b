"""The contract between the response loop and a hosted tool.

A hosted tool is offered to the model as a function; when the model calls it, the
runtime runs the tool, shows the call as the tool's own output item (e.g.
`file_search_call`) with its progress events, and gives the model `ToolResult.output`
to read before it answers. Tools know nothing of engines, HTTP or the event stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["HostedTool", "Source", "ToolResult"]


@dataclass(frozen=True, slots=True)
class Source:
    """Something the answer may cite: `[n]` in the model's text is the n-th source."""

    file_id: str
    filename: str


@dataclass(slots=True)
class ToolResult:
    item: dict[str, Any]  # the fields the finished item carries (status, results, …)
    output: str  # what the model reads
    sources: list[Source] = field(default_factory=list)


class HostedTool(Protocol):
    name: str  # the function name the model calls
    description: str
    parameters: dict[str, Any]  # strict JSON schema of the call's arguments
    item_type: str  # the output item, e.g. "file_search_call"
    id_prefix: str  # its id prefix, e.g. "fs"
    # Events between `.in_progress` and `.completed`, e.g. ("searching",).
    phases: tuple[str, ...]

    def start_item(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The item's fields as it is added (before running)."""

    async def run(self, arguments: dict[str, Any], first: int = 1) -> ToolResult:
        """Run the call; sources in `output` are numbered from `first` (the ones earlier
        calls of the response showed the model keep their numbers)."""
