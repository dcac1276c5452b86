"""Content-addressed stage directories, atomic publication and the ledger.

Every stage output lives in ``<cache_dir>/<stage>/<key>/`` where ``key`` hashes
the config that matters to the stage and the keys of its inputs. A stage builds
into a private temporary directory and renames it into place only when complete,
with ``manifest.json`` (sha256 of every file) written last; a directory without a
valid manifest is never used. A file lock makes concurrent workers that need the
same artifact compute it once and reuse it.

The manifest also records each file's size and modification time. Reusing a
directory in the default ``fast`` mode trusts a file whose size and mtime are
unchanged and re-hashes only the others, so reusing a multi-GB model costs a few
``stat`` calls instead of reading it; ``verify="full"`` re-hashes everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock

from pipeline.infra import faults
from pipeline.infra.atomic import atomic_write_json, file_sha256, file_stat, stable_hash

# Re-exported: pipeline.report imports it from here.
from pipeline.infra.atomic import atomic_write_text as atomic_write_text
from pipeline.infra.manifest import MANIFEST, forget_listed

CONFIG = "config.json"
VERIFY_MODES = ("fast", "full")


def digests_and_stats(directory: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """sha256 and stat of every file under ``directory``, keyed by relative name."""
    files: dict[str, str] = {}
    stats: dict[str, list[int]] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            name = str(p.relative_to(directory))
            # Stat before hashing: a write that lands in between leaves a stale stat,
            # which only makes the next reuse hash the file again.
            stats[name] = file_stat(p)
            files[name] = file_sha256(p)
    return files, stats


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


class Group(Protocol):
    """The ranks of a distributed launch that build one stage together
    (``pipeline.modeling.fsdp.Group``)."""

    rank: int
    is_main: bool

    def broadcast(self, obj: Any) -> Any: ...


class Cache:
    """The cache root: stage directories plus the append-only ledger."""

    def __init__(
        self, root: str | Path, verify: str = "fast", follow: bool = False, poll: float = 0.5
    ) -> None:
        """``verify`` says how a reused directory is checked: ``"fast"`` hashes only the
        files whose size or mtime differs from the manifest, ``"full"`` hashes all.
        ``follow``: this process is a follower rank of a distributed launch
        (``pipeline.modeling.distributed``): it never builds a stage alone, it waits (checking
        every ``poll`` seconds) until rank 0 has published it, then reuses it; and it
        writes nothing to the ledger."""
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        self.verify = verify
        self.follow = follow
        self.poll = poll
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
        group: Group | None = None,
    ) -> Artifact:
        """Return the artifact for (stage, params, inputs), building it if needed.

        ``build(tmp_dir)`` writes the stage's files into ``tmp_dir`` and may
        return a small dict of facts (saved in the manifest as ``info``).
        ``version`` is the stage code's own version: a stage module bumps it when
        its output changes for the same config, so stale outputs are never reused.
        ``group``: the ranks of a distributed launch build this stage together (every
        rank calls ``stage`` with its group). Rank 0 takes the lock and decides, for
        all, to reuse or to build; when building, every rank runs ``build`` (the other
        ranks into a scratch directory that is then deleted), rank 0 alone publishes,
        and the others return once it has.
        """
        identity = self.identity(stage, params, inputs, version)
        key = self.identity_key(stage, params, inputs, version)
        final = self.root / stage / key
        final.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if group is not None and not group.is_main:
            return self._build_beside(stage, key, final, build, group)
        if group is None and self.follow:
            return self._await(stage, key, final)
        with FileLock(str(final) + ".lock"):
            info = self._verified_info(final)
            if group is not None:
                group.broadcast(info)  # None: the other ranks build with this one
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
                faults.point(f"{stage}:start")
                atomic_write_json(tmp / CONFIG, identity)
                info = build(tmp) or {}
                # A rename keeps sizes and mtimes, so stats taken here hold once published.
                files, stats = digests_and_stats(tmp)
                manifest = {"stage": stage, "key": key, "info": info, "files": files}
                atomic_write_json(tmp / MANIFEST, {**manifest, "stat": stats})
                faults.point(f"{stage}:publish")
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(self.checkpoint_dir(stage, key), ignore_errors=True)
        if group is not None:
            group.broadcast(info)  # published: the other ranks go on
        self._log(stage, key, "computed", time.perf_counter() - start)
        return Artifact(stage, key, final, info, computed=True)

    def _await(self, stage: str, key: str, final: Path) -> Artifact:
        """A follower rank's stage: wait until rank 0 has published it, then reuse it.
        (Should rank 0 fail, the launcher stops every rank.)"""
        while True:
            with FileLock(str(final) + ".lock"):
                info = self._verified_info(final)
            if info is not None:
                return Artifact(stage, key, final, info)
            time.sleep(self.poll)

    def _build_beside(
        self, stage: str, key: str, final: Path, build: Callable[[Path], dict | None],
        group: Group,
    ) -> Artifact:  # fmt: skip
        """A follower rank's part in a stage built together: build when rank 0 builds
        (into a scratch directory: rank 0 writes the stage's files), then take the
        manifest's info rank 0 published."""
        info = group.broadcast(None)
        if info is not None:
            return Artifact(stage, key, final, info)
        with tempfile.TemporaryDirectory(prefix=f"{stage}-rank{group.rank}-") as scratch:
            build(Path(scratch))
        info = group.broadcast(None)
        return Artifact(stage, key, final, info, computed=True)

    def _verified_info(self, path: Path) -> dict | None:
        """The manifest's info if every listed file is intact, else None. Must be called
        with the directory's lock held: it may rewrite the manifest's stats."""
        manifest = path / MANIFEST
        if not manifest.is_file():
            return None
        try:
            data = json.loads(manifest.read_text())
            rehashed = self._check_files(path, data["files"], data.get("stat", {}))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        if rehashed is None:
            return None
        if rehashed:
            # Hashed and found intact (e.g. a copied cache): record the new stats so the
            # next reuse trusts them instead of hashing again.
            data["stat"] = {**data.get("stat", {}), **rehashed}
            # A read-only cache is still valid, merely slower to reuse.
            with contextlib.suppress(OSError):
                atomic_write_json(manifest, data)
        return data.get("info", {})

    def _check_files(
        self, path: Path, files: dict[str, str], stats: dict[str, list[int]]
    ) -> dict[str, list[int]] | None:
        """None if a listed file is missing or altered, else the current stats of the
        files that had to be hashed (empty when every file was trusted by its stat)."""
        rehashed: dict[str, list[int]] = {}
        for name, digest in files.items():
            current = file_stat(path / name)  # OSError when missing: invalid
            recorded = stats.get(name)
            if recorded is not None and recorded[0] != current[0]:
                return None  # a different size cannot hold the same content
            if self.verify == "fast" and recorded == current:
                continue
            if file_sha256(path / name) != digest:
                return None
            if recorded != current:
                rehashed[name] = current
        return rehashed

    def forget_files(self, artifact: Artifact, names: list[str], note: dict) -> Artifact:
        """Delete some files of a published artifact (e.g. a trained policy's weights
        once its evaluation is published) and keep the directory valid.

        ``names`` are relative names as in the manifest; a name that is a directory
        (``"model/"`` or ``"model"``) means every file under it. The manifest then lists
        only what remains and ``note`` is merged into its info, so that readers can tell
        why the files are gone. Forgetting files that are already gone does nothing.
        """
        return replace(artifact, info=forget_listed(artifact.path, names, note))

    def discard(self, artifact: Artifact) -> None:
        """Remove a published artifact so that the next ``stage()`` call builds it again
        (a trained policy whose weights were deleted but are needed once more)."""
        with FileLock(str(artifact.path) + ".lock"):
            shutil.rmtree(artifact.path, ignore_errors=True)
        self._log(artifact.stage, artifact.key, "discarded", 0.0)

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
