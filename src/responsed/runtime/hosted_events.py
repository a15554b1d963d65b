"""What the hosted-tool loop tells the translator, alongside the engine's deltas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HostedFinished", "HostedPhase", "HostedStarted"]


@dataclass(frozen=True, slots=True)
class HostedStarted:
    """A hosted tool call begins: its item (`type`, `id` and fields) is added."""

    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HostedPhase:
    """The open call moves on (e.g. "searching"); also its item's status."""

    phase: str


@dataclass(frozen=True, slots=True)
class HostedFinished:
    """The open call is done: these fields complete its item."""

    fields: dict[str, Any]
    status: str = "completed"
