"""`file_search`: the model's queries searched in the request's vector stores.

Results are numbered for the model (`[1] report.pdf: …`) so its answer can cite them as
`[n]`; the runtime turns those markers into `file_citation` annotations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from responsed.tools.base import Source, ToolResult

__all__ = ["FileSearchTool", "Search"]

# (vector_store_ids, queries, max_num_results, filters, ranking_options) → results
Search = Callable[
    [list[str], list[str], int, dict[str, Any] | None, dict[str, Any] | None],
    Awaitable[list[dict[str, Any]]],
]

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    # Bounded, so a small model decoding under the grammar cannot list queries forever.
    "properties": {
        "queries": {
            "type": "array",
            "items": {"type": "string", "maxLength": 200},
            "minItems": 1,
            "maxItems": 4,
        }
    },
    "required": ["queries"],
    "additionalProperties": False,
}
_DEFAULT_RESULTS = 10  # hosted default for max_num_results
_PASSAGE_CHARS = 2000  # per result, in what the model reads


class FileSearchTool:
    name = "file_search"
    description = (
        "Search the user's uploaded files for passages relevant to the question. "
        "Call it with one or more short search queries."
    )
    item_type = "file_search_call"
    id_prefix = "fs"
    phases: tuple[str, ...] = ("searching",)

    def __init__(self, config: dict[str, Any], search: Search, *, include_results: bool) -> None:
        self.parameters = _PARAMETERS
        self.vector_store_ids: list[str] = list(config.get("vector_store_ids") or [])
        self.max_num_results = int(config.get("max_num_results") or _DEFAULT_RESULTS)
        self.filters: dict[str, Any] | None = config.get("filters")
        self.ranking_options: dict[str, Any] | None = config.get("ranking_options")
        self.search = search
        self.include_results = include_results

    def start_item(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"queries": _queries(arguments), "results": None}

    async def run(self, arguments: dict[str, Any], first: int = 1) -> ToolResult:
        queries = _queries(arguments)
        results = await self.search(
            self.vector_store_ids, queries, self.max_num_results, self.filters, self.ranking_options
        )
        sources = [Source(r["file_id"], r["filename"]) for r in results]
        lines = [
            "Search results. Cite a result you use by writing its number in brackets, "
            "like [1], right after the sentence it supports."
        ]
        for n, result in enumerate(results, first):
            text = " ".join(part["text"] for part in result["content"])[:_PASSAGE_CHARS]
            lines.append(f"[{n}] {result['filename']}: {text}")
        if not results:
            lines = ["No results were found in the files."]
        item: dict[str, Any] = {"queries": queries, "results": None}
        if self.include_results:
            item["results"] = [
                {
                    "file_id": r["file_id"],
                    "filename": r["filename"],
                    "score": r["score"],
                    "text": " ".join(part["text"] for part in r["content"]),
                    "attributes": r.get("attributes") or {},
                }
                for r in results
            ]
        return ToolResult(item, "\n\n".join(lines), sources)


def _queries(arguments: dict[str, Any]) -> list[str]:
    queries = arguments.get("queries")
    if isinstance(queries, str):
        return [queries]
    if isinstance(queries, list):
        return [str(q) for q in queries if str(q).strip()]
    query = arguments.get("query")
    return [str(query)] if query else []
