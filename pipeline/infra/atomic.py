"""Hashing and atomic file writes: the building blocks of the cache (``cache.py``) that
other modules use on their own (a table written in one piece, a file checked against
its sha256, a key hashed from a config).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from pathlib import Path
from stat import S_ISREG
from typing import Any


def stable_hash(obj: Any) -> str:
    """sha256 of a canonical JSON encoding (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_sha256(path: Path) -> str:
    """sha256 over a folder's files (relative name and contents, in name order): the key of
    a folder such as one ``datasets`` wrote with ``save_to_disk``. Each file is hashed
    once per (size, mtime) in a process, as the keys of one run ask several times."""
    root = Path(path)
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        st = file.stat()
        name = file.relative_to(root).as_posix()
        h.update(f"{name}\0{_file_sha256_at(str(file), st.st_size, st.st_mtime_ns)}\0".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _file_sha256_at(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def file_stat(path: Path) -> list[int]:
    """``[size_bytes, mtime_ns]`` of a regular file, as the manifest records it."""
    st = os.stat(path)
    if not S_ISREG(st.st_mode):
        raise IsADirectoryError(f"not a regular file: {path}")
    return [st.st_size, st.st_mtime_ns]


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
