"""The built-in engine's prompt cache: saved KV states of recent sequences.

Each llama instance keeps the KV cache of the last sequence it evaluated, and
`Pool.acquire` prefers the instance whose live cache shares the longest prefix with a
prompt. That alone is lost as soon as the instance serves another request, so at the
end of each generation the worker thread that owns the instance copies its sequence
(prompt + generated tokens, exactly what its KV cache holds) into a `PromptCache`.
Before the next generation, a saved state that shares a longer prefix with the prompt
than the live cache does is loaded back, and only the rest of the prompt is evaluated.
A follow-up turn on a chain (whose prompt is the previous prompt, the previous answer
and the new input) then pre-fills only the new tokens.

States are the per-sequence llama.cpp state (`llama_state_seq_get_data`: the KV cells
of sequence 0, no logits), which is what a restore needs; `Llama.save_state` would also
copy the instance's logits buffer (n_batch x n_vocab floats, ~100 MB for SmolLM2). For
SmolLM2-135M (30 layers, 3 KV heads of 64, f16) a state is ~23 KB per token, 46 MB for
2,000 tokens; copying one out took ~16 ms and loading it back ~9 ms here, against about
7 ms per token to evaluate a prompt on 2 cores.

Semantics, after the hosted API's `prompt_cache_key` (requests sharing a key and a
prefix hit the cache):

- a saved state is only reused by a request carrying the same `prompt_cache_key` as the
  one that saved it; requests without a key share one default slot. A key is a
  namespace, not an identity: any prefix shared within it is reused.
- the live KV cache of an instance is not namespaced: whatever the last request on it
  left is reused when it matches (it costs nothing to keep).
- the cache is bounded by bytes (`ModelConfig.prompt_cache_bytes`) and evicts the least
  recently used state; a state made redundant by a longer one of the same key that
  extends it (the next turn of a chain) is dropped at once.

All methods are thread-safe; `save` and `restore` run in the worker thread that owns
the instance.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from responsed.engines.llamacpp_pool import shared_prefix

__all__ = ["CachedState", "PromptCache", "restore_state", "snapshot_state"]

# Sequences shorter than this are not worth a slot: they evaluate in a blink.
MIN_SAVED_TOKENS = 32

_SEQ = 0  # llama-cpp-python evaluates everything as sequence 0


@dataclass(slots=True, eq=False)  # identity hashing: entries key an OrderedDict
class CachedState:
    key: str | None
    tokens: npt.NDArray[np.intc]
    state: npt.NDArray[np.uint8]

    @property
    def nbytes(self) -> int:
        return int(self.tokens.nbytes + self.state.nbytes)


def _pointer(buffer: npt.NDArray[np.uint8]) -> Any:
    return buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def snapshot_state(llama: Any) -> npt.NDArray[np.uint8] | None:
    """A copy of `llama`'s sequence state, or None if llama.cpp cannot produce one."""
    import llama_cpp

    size = int(llama_cpp.llama_state_seq_get_size(llama.ctx, _SEQ))
    if size <= 0:
        return None
    buffer = np.empty(size, dtype=np.uint8)
    written = int(llama_cpp.llama_state_seq_get_data(llama.ctx, _pointer(buffer), size, _SEQ))
    return buffer[:written] if 0 < written <= size else None


def restore_state(llama: Any, entry: CachedState) -> bool:
    """Load `entry` into `llama`; on failure `llama` is left empty and False returned."""
    import llama_cpp

    llama.n_tokens = 0
    llama._ctx.kv_cache_seq_rm(_SEQ, 0, -1)
    size = entry.state.nbytes
    read = int(llama_cpp.llama_state_seq_set_data(llama.ctx, _pointer(entry.state), size, _SEQ))
    if read != size:
        llama.reset()
        llama._ctx.kv_cache_seq_rm(_SEQ, 0, -1)
        return False
    n = len(entry.tokens)
    llama.input_ids[:n] = entry.tokens
    llama.n_tokens = n
    # The logits of the last token are not part of the state: Llama.generate must
    # evaluate at least one token before sampling.
    llama._requires_eval = True
    return True


class PromptCache:
    """Saved sequence states, least recently used first out, within `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CachedState, None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[CachedState]:
        """Least recently used first."""
        with self._lock:
            return list(self._entries)

    def lookup(self, key: str | None, tokens: Any) -> tuple[CachedState | None, int]:
        """The state of slot `key` sharing the longest prefix with `tokens`, and its length."""
        best: CachedState | None = None
        best_n = 0
        with self._lock:
            for entry in self._entries:
                if entry.key == key:
                    n = shared_prefix(entry.tokens, tokens)
                    if n > best_n:
                        best, best_n = entry, n
            if best is not None:
                self._entries.move_to_end(best)
        return best, best_n

    def save(self, llama: Any, key: str | None) -> CachedState | None:
        """Save what `llama`'s KV cache holds under `key`; None when not worth it."""
        n = int(llama.n_tokens)
        if n < MIN_SAVED_TOKENS:
            return None
        tokens = llama.input_ids[:n].copy()
        with self._lock:
            for entry in self._entries:
                # Already covered by a saved state that extends these tokens.
                if entry.key == key and shared_prefix(entry.tokens, tokens) == n:
                    self._entries.move_to_end(entry)
                    return entry
        state = snapshot_state(llama)
        if state is None:
            return None
        saved = CachedState(key, tokens, state)
        if saved.nbytes > self.max_bytes:
            return None
        with self._lock:
            redundant = [
                entry
                for entry in self._entries
                if entry.key == key and shared_prefix(entry.tokens, tokens) == len(entry.tokens)
            ]
            for entry in redundant:
                self._drop(entry)
            self._entries[saved] = None
            self._bytes += saved.nbytes
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return saved

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, entry: CachedState) -> None:
        del self._entries[entry]
        self._bytes -= entry.nbytes
