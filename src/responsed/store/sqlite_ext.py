"""Loading sqlite-vec into the stdlib sqlite3 connections.

Some Python builds (pyenv's default among them) compile `sqlite3` without
`enable_load_extension`; there the extension is registered once per process with
SQLite's `sqlite3_auto_extension` through ctypes, so every connection opened afterwards
has it. Call `install_sqlite_vec()` before `sqlite3.connect` and `load_sqlite_vec(conn)`
after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
import threading

__all__ = ["install_sqlite_vec", "load_sqlite_vec"]

_CAN_LOAD = hasattr(sqlite3.Connection, "enable_load_extension")
_lock = threading.Lock()
_libs: list[ctypes.CDLL] = []  # kept referenced: the entry point must stay mapped


def _vec_path() -> str:
    import sqlite_vec  # type: ignore[import-untyped]

    path: str = sqlite_vec.loadable_path()
    return path if path.endswith((".so", ".dylib", ".dll")) else path + ".so"


def install_sqlite_vec() -> None:
    """Register sqlite-vec for all later connections when they cannot load it."""
    if _CAN_LOAD or _libs:
        return
    with _lock:
        if _libs:
            return
        # The same shared libsqlite3 the sqlite3 module uses: dlopen returns the
        # already-mapped copy, so the registration is seen by its connections.
        name = ctypes.util.find_library("sqlite3") or "libsqlite3.so.0"
        libsqlite = ctypes.CDLL(name)
        vec = ctypes.CDLL(_vec_path())
        libsqlite.sqlite3_auto_extension.argtypes = [ctypes.c_void_p]
        entry = ctypes.cast(vec.sqlite3_vec_init, ctypes.c_void_p)
        if libsqlite.sqlite3_auto_extension(entry) != 0:
            raise RuntimeError("could not register the sqlite-vec extension")
        _libs.extend((libsqlite, vec))


def load_sqlite_vec(conn: sqlite3.Connection) -> None:
    """Load sqlite-vec into `conn` (a no-op where `install_sqlite_vec` registered it)."""
    if not _CAN_LOAD:
        return
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)
