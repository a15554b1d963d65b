"""Object ids with the hosted API's prefixes (`resp_`, `msg_`, `fc_`, …)."""

from __future__ import annotations

import secrets

__all__ = ["new_id"]


def new_id(prefix: str) -> str:
    """`prefix_` + 48 random hex digits: unguessable, so ids double as capabilities."""
    return f"{prefix}_{secrets.token_hex(24)}"
