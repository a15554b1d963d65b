"""The hosted tools a request can use, built for `offered_tools`: `file_search` over
the vector store service, checked as the hosted API checks the tool's fields."""

from __future__ import annotations

from typing import Any, Protocol

from responsed.protocol.errors import invalid_request
from responsed.protocol.request import ContextFields
from responsed.runtime.tools import MakeHosted
from responsed.tools.base import HostedTool
from responsed.tools.file_search import FileSearchTool

__all__ = ["VectorSearch", "file_search_config", "hosted_maker"]


class VectorSearch(Protocol):
    async def search(
        self,
        project_id: str,
        vector_store_ids: list[str],
        query: str | list[str],
        *,
        max_num_results: int = 10,
        filters: dict[str, Any] | None = None,
        ranking_options: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Results (file_id, filename, score, attributes, content), best first."""

    async def retrieve_store(self, project_id: str, store_id: str) -> dict[str, Any]:
        """The vector store; the hosted 404 when there is none."""


def hosted_maker(
    vector_search: VectorSearch | None, project_id: str, request: ContextFields
) -> MakeHosted:
    """What `offered_tools` calls for each hosted tool of the request."""
    include = set(getattr(request, "include", None) or ())

    def make(index: int, tool: dict[str, Any]) -> HostedTool | None:
        if tool.get("type") != "file_search" or vector_search is None:
            return None
        config = file_search_config(index, tool)

        async def search(
            ids: list[str],
            queries: list[str],
            limit: int,
            filters: dict[str, Any] | None,
            ranking: dict[str, Any] | None,
        ) -> list[dict[str, Any]]:
            return await vector_search.search(
                project_id,
                ids,
                queries,
                max_num_results=limit,
                filters=filters,
                ranking_options=ranking,
            )

        return FileSearchTool(config, search, include_results="file_search_call.results" in include)

    return make


_FILE_SEARCH_FIELDS = {"type", "vector_store_ids", "max_num_results", "filters", "ranking_options"}


def file_search_config(index: int, tool: dict[str, Any]) -> dict[str, Any]:
    """The `file_search` tool's fields, checked as the hosted API checks them."""
    where = f"tools[{index}]"
    unknown = set(tool) - {
        "type",
        "vector_store_ids",
        "max_num_results",
        "filters",
        "ranking_options",
    }
    if unknown:
        name = sorted(unknown)[0]
        raise invalid_request(f"Unknown parameter: '{where}.{name}'.", param=f"{where}.{name}")
    ids = tool.get("vector_store_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise invalid_request(
            f"Missing required parameter: '{where}.vector_store_ids'.",
            param=f"{where}.vector_store_ids",
        )
    limit = tool.get("max_num_results")
    if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 50):
        raise invalid_request(
            f"Invalid '{where}.max_num_results': expected an integer between 1 and 50.",
            param=f"{where}.max_num_results",
        )
    return tool
