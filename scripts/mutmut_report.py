"""`make mutmut`: mutation testing of the pure layers with mutmut, and its report.

Runs ``mutmut run`` (its settings are ``[tool.mutmut]`` in pyproject.toml: which modules,
which fast tests), then writes ``results/mutants/mutmut.md`` and ``mutmut.json``: the kill
rate per module and overall, and every mutant that no test killed with its diff and the
reason it cannot change a result (``tests/mutants/mutmut_equivalent.toml``, one entry per
mutant name). A survivor without a reason is listed as UNEXPLAINED and the command fails:
kill it with a test (tests/test_mutmut_kills.py) or say why it is equivalent.

    python scripts/mutmut_report.py [--children N] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "mutants"
REASONS = ROOT / "tests" / "mutants" / "mutmut_equivalent.toml"
MUTMUT = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
KILLED = {"killed", "caught by type check"}
LINE = re.compile(r"^\s+(\S+): (.+)$")


def mutmut(*args: str, check: bool = True) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([*MUTMUT, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(
            f"mutmut {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


def statuses() -> dict[str, str]:
    """mutant name -> status, as ``mutmut results --all true`` prints them."""
    found = {}
    for line in mutmut("results", "--all", "true").splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def module_of(name: str) -> str:
    """pipeline.math.stats.x_wilson__mutmut_3 -> pipeline/math/stats.py"""
    function = name.split("__mutmut_")[0]
    return "/".join(function.split(".")[:-1]) + ".py"


# One Python for every diff (a `mutmut show` each costs a second of start-up).
DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=p) for n, p in json.load(sys.stdin).items()}))
"""


def diffs_of(names: list[str]) -> dict[str, str]:
    """mutant name -> the lines it changes (- original, + mutant)."""
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", DIFFS], cwd=ROOT, capture_output=True, text=True, check=True,
        input=json.dumps({n: module_of(n) for n in names}),
    )  # fmt: skip
    keep = {}
    for name, diff in json.loads(done.stdout).items():
        lines = [x for x in diff.splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")]
        keep[name] = "\n".join(lines)
    return keep


def render(
    found: dict[str, str], reasons: dict[str, str], seconds: float | None
) -> tuple[str, dict]:
    per_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in found.items():
        per_module[module_of(name)]["killed" if status in KILLED else status] += 1
    total = len(found)
    killed = sum(status in KILLED for status in found.values())
    survivors = sorted(n for n, s in found.items() if s not in KILLED)
    unexplained = [n for n in survivors if n not in reasons]
    rate = killed / total if total else float("nan")
    lines = [
        "# Mutation testing of the pure layers (`make mutmut`)",
        "",
        f"mutmut 3 over `{'`, `'.join(sorted(per_module))}` with the fast tests named in "
        "pyproject.toml's `[tool.mutmut]`.",
        "",
        f"**{killed} of {total} mutants killed: {100 * rate:.1f}%.** "
        f"{len(survivors)} survive: {len(survivors) - len(unexplained)} with the reason they "
        f"cannot change a result, {len(unexplained)} unexplained."
        + (f" The run took {seconds:.0f} s." if seconds is not None else ""),
        "",
        "| module | mutants | killed | survived | rate |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for module, counts in sorted(per_module.items()):
        n = sum(counts.values())
        lines.append(f"| `{module}` | {n} | {counts['killed']} | {n - counts['killed']} | "
                     f"{100 * counts['killed'] / n:.1f}% |")  # fmt: skip
    lines += ["", "## Survivors", ""]
    diffs = diffs_of(survivors)
    if not survivors:
        lines.append("None.")
    for name in survivors:
        reason = reasons.get(name, "UNEXPLAINED: kill it with a test or say why it is equivalent")
        lines += [
            f"### `{name}` ({found[name]})",
            "",
            reason,
            "",
            "```diff",
            diffs[name],
            "```",
            "",
        ]
    report = {
        "total": total,
        "killed": killed,
        "kill_rate": rate,
        "seconds": seconds,
        "per_module": {m: dict(c) for m, c in sorted(per_module.items())},
        "survivors": {n: {"status": found[n], "reason": reasons.get(n)} for n in survivors},
    }
    return "\n".join(lines).rstrip() + "\n", report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/mutmut_report.py")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-run", action="store_true", help="report the last run only")
    args = parser.parse_args(argv)
    # Re-reporting the last run (new reasons, say) keeps that run's time.
    last = OUT / "mutmut.json"
    seconds = json.loads(last.read_text()).get("seconds") if last.is_file() else None
    if not args.no_run:
        start = time.perf_counter()
        # mutmut exits non-zero when mutants survive; the report says which.
        mutmut("run", "--max-children", str(args.children), check=False)
        seconds = time.perf_counter() - start
    found = statuses()
    if not found:
        print("no mutmut results: run without --no-run", file=sys.stderr)
        return 2
    reasons = tomllib.loads(REASONS.read_text()) if REASONS.is_file() else {}
    text, report = render(found, {k: str(v) for k, v in reasons.items()}, seconds)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mutmut.md").write_text(text)
    (OUT / "mutmut.json").write_text(json.dumps(report, indent=2) + "\n")
    unexplained = [n for n, v in report["survivors"].items() if v["reason"] is None]
    print(f"[mutmut] {report['killed']} of {report['total']} killed "
          f"({100 * report['kill_rate']:.1f}%), {len(report['survivors'])} survive, "
          f"{len(unexplained)} unexplained -> {OUT / 'mutmut.md'}")  # fmt: skip
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
