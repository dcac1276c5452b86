"""The manifest of a published stage directory (``cache.py``) and the one edit a published
directory allows: forgetting some of its files while it stays valid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from filelock import FileLock

from pipeline.infra.atomic import atomic_write_json

MANIFEST = "manifest.json"


def forget_listed(path: Path, names: list[str], note: dict) -> dict:
    """Delete ``names`` (files or folders, relative to the stage directory ``path``),
    drop them from its manifest and merge ``note`` into the manifest's info, which is
    returned (``Cache.forget_files`` says what the names may be)."""
    names = [_relative(n) for n in names]
    with FileLock(str(path) + ".lock"):
        manifest = path / MANIFEST
        data = json.loads(manifest.read_text())
        for name in [n for n in data["files"] if _matches(n, names)]:
            del data["files"][name]
            data.get("stat", {}).pop(name, None)
        data["info"] = {**data.get("info", {}), **note}
        # Manifest first: killed before the deletions, the directory still verifies
        # (files it does not list are ignored) and calling again deletes them.
        atomic_write_json(manifest, data)
        for name in names:
            _delete(path, name)
    return data["info"]


def _relative(name: str) -> str:
    """``name`` as the manifest spells it (``"./model/"`` -> ``"model"``); refuses a name
    that would reach outside the artifact, name the artifact itself or its manifest."""
    path = Path(name)
    if path.is_absolute() or not path.parts or ".." in path.parts or path.parts == (MANIFEST,):
        raise ValueError(f"cannot forget {name!r}: not a file or folder inside the artifact")
    return path.as_posix()


def _matches(listed: str, names: list[str]) -> bool:
    """Is the manifest entry ``listed`` one of ``names`` or inside a folder among them?"""
    return any(listed == n or listed.startswith(n + "/") for n in names)


def _delete(root: Path, name: str) -> None:
    """Remove ``root/name`` (a file or a whole folder), then any folders it leaves empty."""
    target = root / name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    parent = target.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
