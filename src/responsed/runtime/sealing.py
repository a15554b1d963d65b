"""Sealed items: server state handed to clients, encrypted and authenticated.

Compaction items (and, for stateless clients, reasoning) carry `encrypted_content`
that only this server can open: Fernet tokens (AES-128-CBC + HMAC-SHA256, the format
the hosted API's `gAAAAAB…` strings have) under the server's keys. The first key
seals; every key opens, so a key can be rotated by putting a new one first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from responsed.protocol.errors import invalid_request

__all__ = ["KEY_FILE", "Sealer", "load_keys"]

KEY_FILE = "secret.key"


def load_keys(configured: Sequence[str], data_dir: Path) -> list[str]:
    """Configured keys, else the data dir's key file, created on first run."""
    if configured:
        return list(configured)
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Created 0600 in one step: the key is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
    return [line for line in path.read_text().split() if line]


class Sealer:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise ValueError(f"invalid secret key: {exc}") from None

    def seal(self, kind: str, payload: dict[str, Any]) -> str:
        return self._fernet.encrypt(orjson.dumps({"kind": kind, **payload})).decode()

    def unseal(self, kind: str, token: str, *, param: str) -> dict[str, Any]:
        """The payload of a token sealed as `kind`; 400 for anything else."""
        try:
            payload = orjson.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, orjson.JSONDecodeError, UnicodeError):
            payload = None
        if not isinstance(payload, dict) or payload.get("kind") != kind:
            raise invalid_request(
                "The encrypted content could not be verified or decrypted.",
                param=param,
                code="invalid_encrypted_content",
            )
        return payload
