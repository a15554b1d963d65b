"""Object ids with the hosted API's prefixes (`resp_`, `msg_`, `fc_`, …)."""

from __future__ import annotations

import os
import threading

__all__ = ["new_id"]

# Reading the kernel's CSPRNG once per id is a syscall on the hot path; reading it in
# blocks keeps ids just as unguessable for a fraction of the cost.
_ID_BYTES = 24


class _RandomPool:
    """Kernel randomness read 4 KiB at a time, handed out in id-sized slices."""

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._lock = threading.Lock()
        self._pool = b""
        self._offset = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._offset + n > len(self._pool):
                self._pool, self._offset = os.urandom(self._block), 0
            chunk = self._pool[self._offset : self._offset + n]
            self._offset += n
            return chunk


_random = _RandomPool()


def new_id(prefix: str) -> str:
    """`prefix_` + 48 random hex digits: unguessable, so ids double as capabilities."""
    return f"{prefix}_{_random.take(_ID_BYTES).hex()}"
