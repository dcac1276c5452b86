"""``make mutants``: apply each seeded bug of ``catalog.MUTANTS`` to a fresh copy of the
tree, one at a time, run the whole test suite there, and report which mutants the
suite caught (it failed) and which it missed (it passed).

    python tests/mutants/run.py                 # every mutant
    python tests/mutants/run.py sft-lr-not-in-key eval-reward-inverted
    python tests/mutants/run.py --list

The suite runs with ``-x`` (a caught mutant stops at its first failing test), and the
quick, sharp test files first; every file still runs for a mutant nothing catches.
Exit code 0 only when every mutant was caught. Not part of ``make test``: it runs the
suite once per mutant.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog import MUTANTS, Mutant  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "results" / "mutants" / "report.md"
# Quick tests with a known answer first, so that most mutants are caught in a minute.
FIRST = [
    "test_losses.py",
    "test_offsets.py",
    "test_pairs.py",
    "test_rewards.py",
    "test_kl.py",
    "test_cache_keys.py",
    "test_behaviour.py",
    "test_pipeline_e2e.py",
]


def tracked_files() -> list[str]:
    """What a fresh clone would hold, plus files not yet committed (not ignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if (ROOT / line).is_file()]


# Ignored files the suite needs: the stand-in corpus that `make test` fetches.
CARRIED = [".cache/pipeline/downloads"]


def copy_tree(dest: Path) -> None:
    for name in tracked_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    for name in CARRIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name)


def mutated(mutant: Mutant, tree: Path) -> str:
    """The mutated text of the mutant's file; refuses a mutant that no longer applies."""
    text = (tree / mutant.path).read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(
            f"mutant {mutant.name} is stale: its text occurs {count} times in {mutant.path}"
        )
    return text.replace(mutant.old, mutant.new)


def check_imports_from(tree: Path) -> None:
    """The copy must import its own (mutated) package, not the installed checkout."""
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
        cwd=tree, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the copy in {tree} imports pipeline from {where}")


def test_order(tree: Path) -> list[str]:
    files = sorted(p.name for p in (tree / "tests").glob("test_*.py"))
    return [f"tests/{f}" for f in FIRST if f in files] + [
        f"tests/{f}" for f in files if f not in FIRST
    ]


def run_suite(tree: Path, first_failure: bool = True) -> tuple[bool, str, float]:
    """(suite failed, the first failing test or '', seconds)."""
    start = time.perf_counter()
    # Stop at the first failure with the quick sharp files first, or the whole suite
    # as `make test` runs it.
    args = ["-x", *test_order(tree)] if first_failure else ["-n", "2", "--dist", "loadfile"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tree, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    if done.returncode not in (0, 1):  # collection error, interrupted, ...
        failed = failed or [f"pytest exit code {done.returncode}"]
    return done.returncode != 0, (failed[0] if failed else ""), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only these mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the unmutated suite run (it shows that a failure means a catch)",
    )
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        print(f"error: unknown mutants {sorted(unknown)}", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name:36s} {m.path}: {m.why}")
        return 0
    base = Path(tempfile.mkdtemp(prefix="mutants-"))
    pristine = base / "pristine"
    copy_tree(pristine)
    for m in chosen:  # every mutant must apply before any suite runs
        mutated(m, pristine)
    check_imports_from(pristine)
    results, total = [], time.perf_counter()
    try:
        if not args.no_baseline:
            failed, test, seconds = run_suite(pristine, first_failure=False)
            print(f"[mutants] unmutated suite: {'FAILED at ' + test if failed else 'passes'} "
                  f"({seconds:.0f}s)", flush=True)  # fmt: skip
            if failed:
                print("error: the suite fails without any mutant; fix it first", file=sys.stderr)
                return 2
        for i, m in enumerate(chosen, 1):
            tree = base / m.name
            shutil.copytree(pristine, tree)
            (tree / m.path).write_text(mutated(m, tree))
            caught, test, seconds = run_suite(tree)
            results.append((m, caught, test, seconds))
            print(
                f"[mutants] {i}/{len(chosen)} {m.name}: "
                f"{'caught by ' + test if caught else 'MISSED'} ({seconds:.0f}s)",
                flush=True,
            )
            shutil.rmtree(tree, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    missed = [m.name for m, caught, _, _ in results if not caught]
    lines = [f"{'mutant':36s} {'result':8s} {'seconds':>7s}  first failing test"]
    for m, caught, test, seconds in results:
        lines.append(f"{m.name:36s} {'caught' if caught else 'MISSED':8s} {seconds:7.0f}  {test}")
    lines.append(
        f"{len(results) - len(missed)} of {len(results)} caught in "
        f"{time.perf_counter() - total:.0f}s" + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    print("\n" + "\n".join(lines))
    if not args.names:  # the full list: keep the report beside the other results
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(
            "# make mutants\n\nEach seeded bug of tests/mutants/catalog.py applied alone to a copy "
            "of the tree; the suite (quick files first, stopping at the first failure) must fail.\n\n"
            "```\n" + "\n".join(lines) + "\n```\n"
        )
        print(f"[mutants] report written to {REPORT.relative_to(ROOT)}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
