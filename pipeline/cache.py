"""Content-addressed stage directories, atomic publication and the ledger.

Every stage output lives in ``<cache_dir>/<stage>/<key>/`` where ``key`` hashes
the config that matters to the stage and the keys of its inputs. A stage builds
into a private temporary directory and renames it into place only when complete,
with ``manifest.json`` (sha256 of every file) written last; a directory without a
valid manifest is never used. A file lock makes concurrent workers that need the
same artifact compute it once and reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipeline import chaos

MANIFEST = "manifest.json"
CONFIG = "config.json"


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


@dataclass(frozen=True)
class Artifact:
    """A finished stage output."""

    stage: str
    key: str
    path: Path
    info: dict = field(default_factory=dict)  # what the stage reported (e.g. accuracy)
    computed: bool = False  # True when this invocation built it, False when reused

    def __truediv__(self, name: str) -> Path:
        return self.path / name


class Cache:
    """The cache root: stage directories plus the append-only ledger."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.root / "ledger.jsonl"

    @staticmethod
    def identity(stage: str, params: dict, inputs: list[Artifact], version: int = 1) -> dict:
        """Everything that defines a stage output: its code version, params and inputs."""
        return {
            "stage": stage,
            "version": version,
            "params": params,
            "inputs": [[a.stage, a.key] for a in inputs],
        }

    @staticmethod
    def identity_key(stage: str, params: dict, inputs: list[Artifact], version: int = 1) -> str:
        """The directory name ``stage(...)`` will use, known before anything is built."""
        return stable_hash(Cache.identity(stage, params, inputs, version))[:16]

    def key(self, stage: str, params: dict, inputs: list[Artifact], version: int = 1) -> str:
        """The directory name ``stage(...)`` will use, known before anything is built."""
        return self.identity_key(stage, params, inputs, version)

    def checkpoint_dir(self, stage: str, key: str) -> Path:
        """Where a long build keeps resumable state; it survives a killed process and
        is deleted once the stage is published."""
        return self.root / stage / f".ckpt-{key}"

    def stage(
        self,
        stage: str,
        params: dict,
        inputs: list[Artifact],
        build: Callable[[Path], dict | None],
        version: int = 1,
    ) -> Artifact:
        """Return the artifact for (stage, params, inputs), building it if needed.

        ``build(tmp_dir)`` writes the stage's files into ``tmp_dir`` and may
        return a small dict of facts (saved in the manifest as ``info``).
        ``version`` is the stage code's own version: a stage module bumps it when
        its output changes for the same config, so stale outputs are never reused.
        """
        identity = self.identity(stage, params, inputs, version)
        key = self.identity_key(stage, params, inputs, version)
        final = self.root / stage / key
        final.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with FileLock(str(final) + ".lock"):
            info = self._verified_info(final)
            if info is not None:
                self._log(stage, key, "reused", time.perf_counter() - start)
                return Artifact(stage, key, final, info)
            if final.exists():  # incomplete or corrupted: never used, rebuilt
                print(f"[cache] {stage}/{key} failed its sha256 check; rebuilding it")
                self._log(stage, key, "corrupt", 0.0)
                shutil.rmtree(final)
            # Holding the lock, any temp dir of this key belongs to a killed process.
            for stale in final.parent.glob(f".tmp-{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                chaos.point(f"{stage}:start")
                atomic_write_json(tmp / CONFIG, identity)
                info = build(tmp) or {}
                files = {
                    str(p.relative_to(tmp)): file_sha256(p)
                    for p in sorted(tmp.rglob("*"))
                    if p.is_file()
                }
                atomic_write_json(
                    tmp / MANIFEST, {"stage": stage, "key": key, "info": info, "files": files}
                )
                chaos.point(f"{stage}:publish")
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(self.checkpoint_dir(stage, key), ignore_errors=True)
        self._log(stage, key, "computed", time.perf_counter() - start)
        return Artifact(stage, key, final, info, computed=True)

    def _verified_info(self, path: Path) -> dict | None:
        """The manifest's info if every listed file exists with its sha256, else None."""
        manifest = path / MANIFEST
        if not manifest.is_file():
            return None
        try:
            data = json.loads(manifest.read_text())
            for name, digest in data["files"].items():
                f = path / name
                if not f.is_file() or file_sha256(f) != digest:
                    return None
        except (OSError, ValueError, KeyError):
            return None
        return data.get("info", {})

    def record(self, stage: str, key: str, status: str, seconds: float) -> None:
        """Append one ledger line for a step that does not live in the cache (e.g. plotting)."""
        self._log(stage, key, status, seconds)

    def _log(self, stage: str, key: str, status: str, seconds: float) -> None:
        line = json.dumps(
            {"stage": stage, "key": key, "status": status, "seconds": round(seconds, 3)}
        )
        # One short write in append mode is atomic enough for concurrent writers on a local disk.
        with open(self.ledger_path, "a") as f:
            f.write(line + "\n")
