"""Server keys for sealed items: generated once, rotated by prepending, kinds kept apart."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from responsed.protocol.errors import APIError
from responsed.runtime.sealing import KEY_FILE, Sealer, load_keys


def test_key_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    first = load_keys([], tmp_path / "data")
    assert len(first) == 1
    key_file = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_keys([], tmp_path / "data") == first
    configured = [Fernet.generate_key().decode()]
    assert load_keys(configured, tmp_path / "other") == configured
    assert not (tmp_path / "other").exists()


def test_rotation_and_kinds() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Sealer([old]).seal("reasoning", {"text": "because"})
    rotated = Sealer([new, old])
    assert rotated.unseal("reasoning", token, param="input") == {
        "kind": "reasoning",
        "text": "because",
    }
    fresh = rotated.seal("reasoning", {"text": "now"})
    assert Sealer([new]).unseal("reasoning", fresh, param="input")["text"] == "now"
    for kind, sealed, keys in (
        ("compaction", token, [old]),  # a reasoning token is no compaction
        ("reasoning", token, [new]),  # the old key was retired
        ("reasoning", "not-a-token", [old]),
    ):
        with pytest.raises(APIError) as caught:
            Sealer(keys).unseal(kind, sealed, param="input[0].encrypted_content")
        assert caught.value.status == 400
        assert caught.value.code == "invalid_encrypted_content"
    with pytest.raises(ValueError, match="invalid secret key"):
        Sealer(["short"])
