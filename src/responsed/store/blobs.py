"""Uploaded file content on disk, content-addressed: `<root>/<ab>/<sha256>`.

A blob's path comes from its sha256 alone, never from a client's filename, so no
name can escape the directory and the same content uploaded twice is stored once.
Writes go to a temp file in `<root>/tmp` (same filesystem) and are renamed into
place, so a reader never sees a partial blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["BlobStore", "BlobTooLarge", "BlobWriter"]


class BlobTooLarge(Exception):
    """More bytes were written than the writer's limit (its temp file is removed)."""


class BlobWriter:
    """One upload in progress: hashes and counts while it writes the temp file."""

    def __init__(self, store: BlobStore, max_bytes: int) -> None:
        self._store = store
        self._max = max_bytes
        fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._temp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max:
            self.abort()
            raise BlobTooLarge(self._max)
        self._hash.update(data)
        self._file.write(data)

    def commit(self) -> str:
        """Move the content into place; its sha256. Existing identical content is kept."""
        self._file.close()
        digest = self._hash.hexdigest()
        target = self._store.path(digest)
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            self._temp.unlink(missing_ok=True)
        else:
            os.replace(self._temp, target)
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._temp.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self) -> None:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def writer(self, max_bytes: int) -> BlobWriter:
        return BlobWriter(self, max_bytes)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()
