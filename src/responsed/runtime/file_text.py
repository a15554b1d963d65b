"""A file's text for the model: PDFs page by page (pypdf), text-like files decoded.

Pure: works on the bytes it is given. Anything else is refused with the type named,
since a text model cannot read it and silently dropping it would mislead.
"""

from __future__ import annotations

import io
import mimetypes
from pathlib import PurePath

__all__ = ["MAX_PAGE_IMAGES", "UnreadableFile", "extract_text", "file_type", "pdf_page_images"]

_TEXT_MIMES = {
    "application/json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/x-sh",
    "application/sql",
    "application/x-ndjson",
    "application/jsonl",
}
_TEXT_EXTENSIONS = {
    # documents and data
    ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".ndjson",
    ".html", ".htm", ".xml", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".log",
    ".tex", ".svg",
    # code
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".scala",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".pl", ".swift",
    ".m", ".r", ".lua", ".sh", ".bash", ".zsh", ".ps1", ".sql", ".css", ".scss", ".vue",
    ".dart", ".hs", ".ex", ".exs", ".erl", ".clj", ".el", ".vim", ".proto", ".graphql",
}  # fmt: skip


class UnreadableFile(Exception):
    """The file cannot be given to the model as text; the message says why."""


def file_type(filename: str, data: bytes, mime: str | None = None) -> str:
    """The kind of file: "pdf", "text", or the best known MIME type of anything else."""
    if data[:5] == b"%PDF-" or mime == "application/pdf":
        return "pdf"
    suffix = PurePath(filename).suffix.lower()
    if suffix == ".pdf":
        return "pdf"
    guessed = mime or mimetypes.guess_type(filename)[0]
    if suffix in _TEXT_EXTENSIONS or (guessed or "").startswith("text/") or guessed in _TEXT_MIMES:
        return "text"
    return guessed or "application/octet-stream"


def extract_text(filename: str, data: bytes, mime: str | None = None) -> str:
    kind = file_type(filename, data, mime)
    if kind == "pdf":
        return _pdf_text(data)
    if kind == "text":
        return data.decode("utf-8", errors="replace")
    raise UnreadableFile(f"Unsupported file type: {kind}")


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile("The PDF file is encrypted.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # pypdf reports damage through several exception types.
        raise UnreadableFile(f"The PDF file could not be read: {exc}") from None
    if not pages:
        raise UnreadableFile("The PDF file has no pages.")
    return "\n".join(f"--- page {n} ---\n{text.strip()}" for n, text in enumerate(pages, 1))


MAX_PAGE_IMAGES = 20  # pages rendered for a vision model; the text covers the rest
_RENDER_SCALE = 1.5  # times 72 dpi: small print stays legible at a modest size


def pdf_page_images(data: bytes, limit: int = MAX_PAGE_IMAGES) -> list[bytes]:
    """The first `limit` pages of a PDF as PNG images (pdfium renders; pypdf cannot)."""
    import pypdfium2  # type: ignore[import-untyped]

    document = pypdfium2.PdfDocument(data)
    try:
        images: list[bytes] = []
        for index in range(min(len(document), limit)):
            page = document[index]
            try:
                bitmap = page.render(scale=_RENDER_SCALE)
                out = io.BytesIO()
                bitmap.to_pil().save(out, format="PNG", optimize=True)
                images.append(out.getvalue())
            finally:
                page.close()
        return images
    finally:
        document.close()
