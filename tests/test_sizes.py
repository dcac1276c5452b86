"""``scripts/check_sizes.py`` (run by ``make lint``): it reports a module over 300 lines
and a function over 80, nested and async ones included, and passes the real tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts import check_sizes
from tests.conftest import ROOT


def function(name: str, body_lines: int, indent: str = "", decorated: bool = False) -> str:
    """A function spanning ``body_lines + 1`` lines (its ``def`` and its body)."""
    head = f"{indent}@staticmethod\n" if decorated else ""
    body = "".join(f"{indent}    x = {i}\n" for i in range(body_lines))
    return f"{head}{indent}def {name}():\n{body}"


def write_tree(root: Path) -> None:
    big = root / "big.py"
    # 81 lines of def + body: over; a nested async one of 90 lines inside it, over too.
    text = "def outer():\n    async def inner():\n"
    text += "".join(f"        y = {i}\n" for i in range(89))
    text += "".join(f"    x = {i}\n" for i in range(219))  # module: 2 + 89 + 219 = 310 lines
    big.write_text(text)
    small = root / "pkg" / "small.py"
    small.parent.mkdir()
    # 80 lines exactly (the limit) even with a decorator above: under.
    small.write_text("class A:\n" + function("method", 79, "    ", decorated=True))
    cached = root / "pkg" / "__pycache__" / "skipped.py"
    cached.parent.mkdir()
    cached.write_text("x = 1\n" * 400)


def test_reports_every_offender_and_passes_the_rest(tmp_path: Path, capsys) -> None:
    write_tree(tmp_path)
    assert check_sizes.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    big = (tmp_path / "big.py").as_posix()
    assert out == [
        f"{big}: 310 lines (max 300)",
        f"{big}:1 function outer: 310 lines (max 80)",
        f"{big}:2 function outer.inner: 90 lines (max 80)",
    ]


def test_a_clean_tree_prints_one_summary_line(tmp_path: Path, capsys) -> None:
    write_tree(tmp_path)
    small = tmp_path / "pkg" / "small.py"
    assert check_sizes.main([str(small)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"sizes: 1 modules, largest {small.as_posix()} 82 lines; "
        f"longest function {small.as_posix()}:A.method 80 lines"
    ]


def test_the_real_tree_is_within_the_limits() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/check_sizes.py", "pipeline", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("sizes: ")
