"""The Files API, and `input_file` parts turned into text the model can read.

Metadata rows are in `store/files.py`, content in `store/blobs.py`. Expired files are
invisible at once and their rows and blobs are removed by a purge that runs at most
once a minute, on the next file operation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from responsed.protocol.errors import APIError, invalid_request, not_found
from responsed.protocol.ids import new_id
from responsed.runtime.file_text import UnreadableFile, extract_text, file_type, pdf_page_images
from responsed.store.blobs import BlobStore, BlobWriter
from responsed.store.files import FileRow, FileStore

__all__ = ["PURPOSES", "FileService"]

Item = dict[str, Any]
Items = list[Item]  # named here: the class's `list` method shadows the builtin inside it

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
_MIN_EXPIRY, _MAX_EXPIRY = 3600, 2_592_000
_BATCH_EXPIRY = 30 * 24 * 3600  # the hosted default for purpose=batch
_PURGE_EVERY = 60.0
_TEXT_CACHE = 64  # extracted texts kept by sha256 (a chain re-rendered re-reads its files)


def file_not_found(file_id: str, param: str | None = "id") -> APIError:
    return not_found(f"No such File object: {file_id}", param=param)


class FileService:
    def __init__(self, store: FileStore, blobs: BlobStore, *, max_file_bytes: int) -> None:
        self.store = store
        self.blobs = blobs
        self.max_file_bytes = max_file_bytes
        self._purged_at = 0.0
        self._texts: OrderedDict[str, str] = OrderedDict()
        # Called with (project_id, file_id) after a file is deleted (vector stores
        # drop it from their indexes).
        self.on_delete: list[Callable[[str, str], Awaitable[None]]] = []

    def open(self) -> None:
        self.blobs.open()

    # -- the Files API -------------------------------------------------------------

    def new_upload(self) -> BlobWriter:
        """Where an upload's bytes go while they arrive; `BlobTooLarge` past the limit."""
        return self.blobs.writer(self.max_file_bytes)

    async def create(
        self,
        project_id: str,
        upload: BlobWriter,
        *,
        filename: str | None,
        purpose: str | None,
        expires_after: dict[str, str],
    ) -> dict[str, Any]:
        """Store a finished upload as a file; the upload is dropped if refused."""
        try:
            if not filename:
                raise invalid_request("Missing required parameter: 'file'.", param="file")
            if purpose is None:
                raise invalid_request("Missing required parameter: 'purpose'.", param="purpose")
            if purpose not in PURPOSES:
                supported = ", ".join(f"'{p}'" for p in PURPOSES)
                raise invalid_request(
                    f"Invalid value: '{purpose}'. Supported values are: {supported}.",
                    param="purpose",
                    code="invalid_value",
                )
            now = int(time.time())
            ttl = _expiry_seconds(expires_after)
            if ttl is None and purpose == "batch":
                ttl = _BATCH_EXPIRY
        except APIError:
            upload.abort()
            raise
        row = FileRow(
            id="file-" + new_id("file").removeprefix("file_"),  # the hosted ids' dash
            created_at=now,
            bytes=upload.size,
            filename=filename,
            purpose=purpose,
            sha256=upload.commit(),
            expires_at=None if ttl is None else now + ttl,
        )
        # No await between the rename above and this inline write, so a concurrent
        # delete cannot remove the blob between the two (see delete()).
        await self.store.insert(project_id, row)
        return row.wire()

    async def list(
        self,
        project_id: str,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        order: str,
    ) -> dict[str, Any]:
        if not 1 <= limit <= 10_000:
            raise invalid_request(
                "Invalid 'limit': expected an integer between 1 and 10000.",
                param="limit",
                code="invalid_value",
            )
        if order not in ("asc", "desc"):
            raise invalid_request(
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            )
        now = await self._purge()
        direction: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"
        rows, has_more = await self.store.page(
            project_id, purpose=purpose, after=after, limit=limit, order=direction, now=now
        )
        data = [r.wire() for r in rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }

    async def retrieve(self, project_id: str, file_id: str) -> dict[str, Any]:
        return (await self._row(project_id, file_id)).wire()

    async def content(self, project_id: str, file_id: str) -> tuple[str, Path]:
        """The file's name and where its bytes are (for a streamed download)."""
        row = await self._row(project_id, file_id)
        return row.filename, self.blobs.path(row.sha256)

    async def delete(self, project_id: str, file_id: str) -> dict[str, Any]:
        await self._purge()
        deleted, orphans = await self.store.delete(project_id, file_id)
        if not deleted:
            raise file_not_found(file_id)
        # The write ran inline on this thread; no upload can have reused the blob since.
        for digest in orphans:
            self.blobs.delete(digest)
        for hook in self.on_delete:
            await hook(project_id, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    async def open_for_model(self, project_id: str, file_id: str) -> tuple[str, bytes]:
        row = await self._row(project_id, file_id)
        data = await asyncio.to_thread(self.blobs.read, row.sha256)
        return row.filename, data

    async def _row(self, project_id: str, file_id: str) -> FileRow:
        now = await self._purge()
        row = await self.store.get(project_id, file_id, now)
        if row is None:
            raise file_not_found(file_id)
        return row

    async def _purge(self) -> int:
        """Remove expired files, at most once a minute; the current time."""
        now = time.time()
        if now - self._purged_at >= _PURGE_EVERY:
            self._purged_at = now
            for digest in await self.store.purge_expired(int(now)):
                self.blobs.delete(digest)
        return int(now)

    # -- input_file parts ----------------------------------------------------------

    async def inline(
        self, project_id: str, items: Items, *, history: bool = False, images: bool = False
    ) -> Items:
        """`items` with every `input_file` part replaced by an `input_text` part holding
        the file's text, for rendering only (stored items keep the part as given); with
        `images` (a vision model), a message's PDF is followed by its page images.

        This turn's items (`history=False`) refuse an unknown file or an unreadable
        one with the part's `param`; earlier items get a placeholder instead, so a
        file deleted later does not break the conversation.
        """
        if not any(_file_parts(item) for item in items):
            return items  # the common case: no copy
        out: Items = []
        for index, item in enumerate(items):
            where = _file_parts(item)
            if not where:
                out.append(item)
                continue
            field, parts = where
            new_parts = []
            for n, part in enumerate(parts):
                if part.get("type") != "input_file":
                    new_parts.append(part)
                    continue
                param = f"input[{index}].{field}[{n}]"
                text = await self._part_text(project_id, part, param, history=history)
                # Text parts are joined as they are: keep the file apart from its neighbours.
                lead = "\n\n" if n else ""
                tail = "\n\n" if n < len(parts) - 1 else ""
                new_parts.append({"type": "input_text", "text": f"{lead}{text}{tail}"})
                if images and field == "content":
                    new_parts.extend(await self._page_images(project_id, part, param))
            out.append({**item, field: new_parts})
        return out

    async def _page_images(self, project_id: str, part: Item, param: str) -> Items:
        try:
            filename, data, mime = await self._part_bytes(project_id, part, param)
        except APIError:
            return []  # already reported (or a placeholder) by the text
        if file_type(filename, data, mime) != "pdf":
            return []
        try:
            pages = await asyncio.to_thread(pdf_page_images, data)
        except Exception:  # pdfium cannot render it: the text still stands
            return []
        return [
            {
                "type": "input_image",
                "image_url": "data:image/png;base64," + base64.b64encode(png).decode(),
                "detail": "auto",
            }
            for png in pages
        ]

    async def _part_text(self, project_id: str, part: Item, param: str, *, history: bool) -> str:
        name = part.get("filename") or part.get("file_id") or "file"
        try:
            filename, data, mime = await self._part_bytes(project_id, part, param)
            text = await self._text(filename, data, mime, param)
        except APIError:
            if not history:
                raise
            return f"[file: {name}] (no longer available)"
        return f"[file: {filename}]\n{text}"

    async def _part_bytes(
        self, project_id: str, part: Item, param: str
    ) -> tuple[str, bytes, str | None]:
        if part.get("file_url"):
            raise file_url_refused(param)
        if part.get("file_id"):
            try:
                filename, data = await self.open_for_model(project_id, part["file_id"])
            except APIError as exc:
                raise file_not_found(part["file_id"], f"{param}.file_id") from exc
            return part.get("filename") or filename, data, None
        if part.get("file_data"):
            mime, data = _decode_data(part["file_data"], f"{param}.file_data")
            return part.get("filename") or "file", data, mime
        raise missing_file_source(param)

    async def _text(self, filename: str, data: bytes, mime: str | None, param: str) -> str:
        key = hashlib.sha256(data).hexdigest()
        text = self._texts.get(key)
        if text is None:
            try:
                text = await asyncio.to_thread(extract_text, filename, data, mime)
            except UnreadableFile as exc:
                raise invalid_request(str(exc), param=param, code="invalid_value") from None
            self._texts[key] = text
            if len(self._texts) > _TEXT_CACHE:
                self._texts.popitem(last=False)
        else:
            self._texts.move_to_end(key)
        return text


def file_url_refused(param: str) -> APIError:
    return invalid_request(
        "file_url inputs are not enabled on this server.", param=param, code="unsupported_value"
    )


def missing_file_source(param: str) -> APIError:
    return invalid_request(
        "An input_file part needs one of 'file_id', 'file_data' or 'file_url'.", param=param
    )


def _file_parts(item: Item) -> tuple[str, list[Any]] | None:
    """(field, parts) of an item holding input_file parts; None otherwise."""
    if item.get("type") == "message":
        field = "content"
    elif item.get("type") == "function_call_output":
        field = "output"
    else:
        return None
    parts = item.get(field)
    if isinstance(parts, list) and any(
        isinstance(p, dict) and p.get("type") == "input_file" for p in parts
    ):
        return field, parts
    return None


def _decode_data(value: str, param: str) -> tuple[str | None, bytes]:
    """A data URL (`data:application/pdf;base64,…`) or bare base64 → (mime, bytes)."""
    mime: str | None = None
    payload = value
    if value.startswith("data:"):
        header, sep, payload = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise invalid_request(
                "file_data must be a base64 data URL or base64 text.", param=param
            )
        mime = header[5:].removesuffix(";base64").split(";")[0] or None
    try:
        return mime, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request("file_data is not valid base64.", param=param) from None


def _expiry_seconds(expires_after: dict[str, str]) -> int | None:
    if not expires_after:
        return None
    anchor = expires_after.get("anchor")
    if anchor != "created_at":
        raise invalid_request(
            f"Invalid value: '{anchor}'. Supported values are: 'created_at'.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    raw = expires_after.get("seconds", "")
    if not raw.lstrip("-").isdigit() or not _MIN_EXPIRY <= int(raw) <= _MAX_EXPIRY:
        raise invalid_request(
            f"Invalid 'expires_after.seconds': expected an integer between {_MIN_EXPIRY} "
            f"and {_MAX_EXPIRY}.",
            param="expires_after.seconds",
            code="invalid_value",
        )
    return int(raw)
