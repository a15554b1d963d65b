"""`/v1/files` routes. Uploads are parsed as they arrive (python-multipart's streaming
parser) and the file part goes straight to disk, so no upload is held in memory."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.responses import FileResponse, Response

from responsed.api.deps import project_of
from responsed.api.json import JSONBytes
from responsed.protocol.errors import APIError, invalid_request
from responsed.runtime.files import FileService
from responsed.store.blobs import BlobTooLarge, BlobWriter

__all__ = ["UPLOAD_PATH", "router"]

router = APIRouter()
UPLOAD_PATH = "/v1/files"
_MAX_FIELD = 64 * 1024  # a form field other than the file (purpose, expires_after[…])


async def files_of(request: Request) -> FileService:
    service: FileService = request.app.state.files
    return service


Service = Annotated[FileService, Depends(files_of)]
Project = Annotated[str, Depends(project_of)]


class _Form:
    """Callbacks for MultipartParser: the `file` part into a blob writer, small fields
    into memory."""

    def __init__(self, service: FileService) -> None:
        self.service = service
        self.upload: BlobWriter | None = None
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._name: str | None = None
        self._buffer: bytearray | None = None
        self._writer: BlobWriter | None = None

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._buffer = None
        self._writer = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name == "file" and filename is not None and self.upload is None:
            self.filename = filename.decode("utf-8", "replace")
            self._writer = self.upload = self.service.new_upload()
        else:
            self._name, self._buffer = name, bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        # Written inline: one received chunk (tens of KiB) into the page cache is cheaper
        # than a thread hop per chunk.
        if self._writer is not None:
            self._writer.write(data[start:end])
        elif self._buffer is not None:
            self._buffer += data[start:end]
            if len(self._buffer) > _MAX_FIELD:
                raise invalid_request(f"Form field '{self._name}' is too large.")

    def _part_end(self) -> None:
        if self._name is not None and self._buffer is not None:
            self.fields[self._name] = self._buffer.decode("utf-8", "replace")
        self._name = self._buffer = self._writer = None

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()


@router.post(UPLOAD_PATH)
async def create_file(request: Request, service: Service, project: Project) -> Response:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise invalid_request(
            "Uploads must be multipart/form-data with 'file' and 'purpose' fields."
        )
    form = _Form(service)
    parser = MultipartParser(boundary, form.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BlobTooLarge:
        form.abort()
        raise APIError(
            413,
            f"File too large: the limit is {service.max_file_bytes} bytes.",
            param="file",
            code="file_too_large",
        ) from None
    except APIError:
        form.abort()
        raise
    except Exception as exc:  # the multipart parser's errors, a dropped client
        form.abort()
        raise invalid_request(f"Malformed multipart body: {exc}") from None
    if form.upload is None:
        raise invalid_request("Missing required parameter: 'file'.", param="file")
    expires_after = {
        key: form.fields[f"expires_after[{key}]"]
        for key in ("anchor", "seconds")
        if f"expires_after[{key}]" in form.fields
    }
    created = await service.create(
        project,
        form.upload,
        filename=form.filename,
        purpose=form.fields.get("purpose"),
        expires_after=expires_after,
    )
    return JSONBytes(created)


@router.get(UPLOAD_PATH)
async def list_files(
    service: Service,
    project: Project,
    purpose: str | None = None,
    limit: int = 10_000,
    after: str | None = None,
    order: str = "desc",
) -> Response:
    page = await service.list(project, purpose=purpose, limit=limit, after=after, order=order)
    return JSONBytes(page)


@router.get(UPLOAD_PATH + "/{file_id}")
async def retrieve_file(file_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.retrieve(project, file_id))


@router.delete(UPLOAD_PATH + "/{file_id}")
async def delete_file(file_id: str, service: Service, project: Project) -> Response:
    return JSONBytes(await service.delete(project, file_id))


@router.get(UPLOAD_PATH + "/{file_id}/content")
async def file_content(file_id: str, service: Service, project: Project) -> Response:
    _, path = await service.content(project, file_id)
    return FileResponse(path, media_type="application/octet-stream")
