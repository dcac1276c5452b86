"""Cheap integrity checks of reused cache directories (``Cache(verify=...)``) and
``Cache.forget_files``, on a toy stage in a temporary cache (no pipeline run).

The fast mode trusts a file whose size and mtime match the manifest and hashes the
rest; these tests pin down what it notices, what it deliberately does not, and that
the full mode still hashes everything."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import pipeline.infra.cache
from pipeline.infra.cache import MANIFEST, Artifact, Cache

FILES = {"data.bin": bytes(range(256)) * 4, "model/weights.bin": b"w" * 300, "model/cfg": b"{}"}


class Builds:
    """A toy stage's build function that counts how often it runs."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, tmp: Path) -> dict:
        self.count += 1
        for name, content in FILES.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        return {"accuracy": 0.5}


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path ``file_sha256`` reads, in order (the cache calls it by module name)."""
    seen: list[Path] = []
    real = pipeline.infra.cache.file_sha256

    def counting(path: Path) -> str:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(pipeline.infra.cache, "file_sha256", counting)
    return seen


def toy(cache: Cache, build: Builds) -> Artifact:
    return cache.stage("toy", {"n": 1}, [], build)


def statuses(cache: Cache) -> list[str]:
    return [json.loads(line)["status"] for line in cache.ledger_path.read_text().splitlines()]


def inside(paths: list[Path], directory: Path) -> list[Path]:
    """The paths under ``directory`` (a rebuild hashes its private temp dir, not this)."""
    return [p for p in paths if p.resolve().is_relative_to(directory.resolve())]


def flip_byte(path: Path, keep_mtime: bool) -> None:
    """Change one byte in place; with ``keep_mtime`` size and mtime look untouched."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    # Move the mtime on explicitly: a coarse filesystem clock could otherwise keep it.
    mtime = before.st_mtime_ns if keep_mtime else before.st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(before.st_atime_ns, mtime))


def manifest(art: Artifact) -> dict:
    return json.loads((art.path / MANIFEST).read_text())


def test_publish_records_hashes_and_stats_of_every_file(tmp_path: Path) -> None:
    art = toy(Cache(tmp_path), Builds())
    data = manifest(art)
    assert set(data["files"]) == set(data["stat"]) == {*FILES, "config.json"}
    for name, (size, mtime_ns) in data["stat"].items():
        st = (art.path / name).stat()
        assert (size, mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_fast_reuse_reads_no_unchanged_file(tmp_path: Path, hashed: list[Path]) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    hashed.clear()
    again = toy(cache, build)
    assert hashed == [] and build.count == 1
    assert again.info == {"accuracy": 0.5} and not again.computed
    assert statuses(cache) == ["computed", "reused"]
    assert manifest(again) == manifest(art)  # nothing to refresh


def test_full_mode_hashes_every_file_on_reuse(tmp_path: Path, hashed: list[Path]) -> None:
    build = Builds()
    toy(Cache(tmp_path), build)
    hashed.clear()
    toy(Cache(tmp_path, verify="full"), build)
    assert len(hashed) == len(FILES) + 1 and build.count == 1  # + config.json


def test_same_size_and_mtime_edit_passes_fast_but_not_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = Builds()
    art = toy(Cache(tmp_path), build)
    flip_byte(art / "data.bin", keep_mtime=True)
    # The fast mode's documented blind spot: it trusts size and mtime.
    fast = Cache(tmp_path)
    toy(fast, build)
    assert build.count == 1 and statuses(fast)[-1] == "reused"
    full = Cache(tmp_path, verify="full")
    rebuilt = toy(full, build)
    assert build.count == 2 and statuses(full)[-2:] == ["corrupt", "computed"]
    assert (
        f"[cache] toy/{art.key} failed its sha256 check; rebuilding it" in capsys.readouterr().out
    )
    assert (rebuilt / "data.bin").read_bytes() == FILES["data.bin"]


def test_edit_that_moves_the_mtime_is_caught_in_fast_mode(tmp_path: Path) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    flip_byte(art / "model/weights.bin", keep_mtime=False)
    rebuilt = toy(cache, build)
    assert build.count == 2 and statuses(cache) == ["computed", "corrupt", "computed"]
    assert (rebuilt / "model/weights.bin").read_bytes() == FILES["model/weights.bin"]


def test_truncated_file_is_caught_by_its_size_alone(tmp_path: Path, hashed: list[Path]) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    target = art / "data.bin"
    before = target.stat()
    target.write_bytes(FILES["data.bin"][:100])
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    hashed.clear()
    toy(cache, build)
    assert build.count == 2 and statuses(cache) == ["computed", "corrupt", "computed"]
    assert inside(hashed, art.path) == []  # decided without reading the stage directory


def test_copied_cache_is_hashed_once_then_trusted(tmp_path: Path, hashed: list[Path]) -> None:
    build = Builds()
    toy(Cache(tmp_path / "a"), build)
    # A plain copy gives every file a new mtime but the same content.
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copyfile)
    copied = Cache(tmp_path / "b")
    hashed.clear()
    art = toy(copied, build)
    assert len(inside(hashed, art.path)) == len(FILES) + 1
    assert build.count == 1 and statuses(copied)[-1] == "reused"
    for name, (_, mtime_ns) in manifest(art)["stat"].items():
        assert (art / name).stat().st_mtime_ns == mtime_ns, name  # refreshed
    hashed.clear()
    toy(copied, build)
    assert hashed == [] and statuses(copied)[-1] == "reused"


def test_one_touched_file_is_rehashed_alone(tmp_path: Path, hashed: list[Path]) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    st = (art / "model/cfg").stat()
    os.utime(art / "model/cfg", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    hashed.clear()
    toy(cache, build)
    assert hashed == [art / "model/cfg"] and statuses(cache)[-1] == "reused"
    hashed.clear()
    toy(cache, build)
    assert hashed == []


def strip_stats(art: Artifact) -> None:
    """Make the manifest look like one written before stats were recorded."""
    data = manifest(art)
    del data["stat"]
    (art.path / MANIFEST).write_text(json.dumps(data))


def test_old_manifest_without_stats_is_verified_by_hashing(
    tmp_path: Path, hashed: list[Path]
) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    strip_stats(art)
    hashed.clear()
    toy(cache, build)
    assert len(hashed) == len(FILES) + 1 and statuses(cache)[-1] == "reused"
    assert set(manifest(art)["stat"]) == {*FILES, "config.json"}  # upgraded in place
    hashed.clear()
    toy(cache, build)
    assert hashed == []


def test_old_manifest_without_stats_still_catches_a_corrupt_file(tmp_path: Path) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    strip_stats(art)
    flip_byte(art / "data.bin", keep_mtime=True)
    toy(cache, build)
    assert build.count == 2 and statuses(cache) == ["computed", "corrupt", "computed"]


def test_missing_file_is_caught(tmp_path: Path) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    (art / "model/cfg").unlink()
    toy(cache, build)
    assert build.count == 2 and statuses(cache) == ["computed", "corrupt", "computed"]


def test_forget_files_deletes_them_and_the_artifact_stays_valid(tmp_path: Path) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    slim = cache.forget_files(art, ["model/"], {"weights_deleted": True})
    assert not (art.path / "model").exists() and (art / "data.bin").is_file()
    assert slim.info == {"accuracy": 0.5, "weights_deleted": True}
    assert (slim.key, slim.path) == (art.key, art.path)
    data = manifest(slim)
    assert set(data["files"]) == set(data["stat"]) == {"data.bin", "config.json"}
    for verify in ("fast", "full"):
        reused = toy(Cache(tmp_path, verify=verify), build)
        assert reused.info == slim.info
    assert build.count == 1 and statuses(cache) == ["computed", "reused", "reused"]
    # Forgetting again (e.g. after a kill between manifest and deletion) does nothing.
    assert cache.forget_files(art, ["model"], {}).info == slim.info


def test_forget_files_takes_single_files(tmp_path: Path) -> None:
    cache, build = Cache(tmp_path), Builds()
    art = toy(cache, build)
    cache.forget_files(art, ["model/weights.bin"], {"weights_deleted": True})
    assert not (art / "model/weights.bin").exists() and (art / "model/cfg").is_file()
    toy(cache, build)
    assert build.count == 1 and statuses(cache)[-1] == "reused"


@pytest.mark.parametrize("name", ["../toy", "/etc/passwd", ".", "", MANIFEST])
def test_forget_files_refuses_names_outside_the_artifact(tmp_path: Path, name: str) -> None:
    cache = Cache(tmp_path)
    art = toy(cache, Builds())
    with pytest.raises(ValueError, match="cannot forget"):
        cache.forget_files(art, [name], {})
    assert manifest(art)["info"] == {"accuracy": 0.5}


def test_unknown_verify_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="verify"):
        Cache(tmp_path, verify="sometimes")
