"""Size limits of the code, checked by ``make lint``: no module over 300 lines and no
function or method (nested and async ones included) over 80.

    python scripts/check_sizes.py                     # pipeline/ and scripts/
    python scripts/check_sizes.py pipeline tests      # other folders (or single files)

A function's size is ``end_lineno - lineno + 1`` of its ``def`` (decorators excluded,
its docstring and comments included); a module's is its number of lines. Every offender
is printed on a line of its own and the exit status is 1; a clean tree prints a one-line
summary and exits 0.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_MODULE = 300
MAX_FUNCTION = 80
DEFAULT_FOLDERS = ("pipeline", "scripts")
SKIP_DIRS = {"__pycache__", "node_modules"}


@dataclass(frozen=True)
class Function:
    path: str
    line: int
    name: str  # qualified: Class.method, outer.inner
    lines: int


def python_files(roots: list[str]) -> list[Path]:
    """Every .py file under the given folders (or the files themselves), sorted; hidden
    and cache folders are skipped."""
    files: set[Path] = set()
    for root in map(Path, roots):
        if root.is_file():
            files.add(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"no such file or folder: {root}")
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).parts[:-1]
            if not any(p in SKIP_DIRS or p.startswith(".") for p in parts):
                files.add(path)
    return sorted(files)


def functions(tree: ast.AST, path: str) -> list[Function]:
    """Every function and method in ``tree``, nested ones included, with its span."""
    found: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                span = child.end_lineno - child.lineno + 1
                found.append(Function(path, child.lineno, name, span))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def check(
    roots: list[str], max_module: int = MAX_MODULE, max_function: int = MAX_FUNCTION
) -> tuple[list[str], str]:
    """(one line per offender, the summary of a clean tree)."""
    problems: list[str] = []
    modules: list[tuple[int, str]] = []
    every: list[Function] = []
    for file in python_files(roots):
        path = file.as_posix()
        text = file.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError as e:
            problems.append(f"{path}:{e.lineno}: cannot parse: {e.msg}")
            continue
        n = len(text.splitlines())
        modules.append((n, path))
        if n > max_module:
            problems.append(f"{path}: {n} lines (max {max_module})")
        for f in functions(tree, path):
            every.append(f)
            if f.lines > max_function:
                problems.append(
                    f"{path}:{f.line} function {f.name}: {f.lines} lines (max {max_function})"
                )
    summary = f"sizes: {len(modules)} modules"
    if modules:
        n, path = max(modules)
        summary += f", largest {path} {n} lines"
    if every:
        longest = max(every, key=lambda f: (f.lines, f.path, f.line))
        summary += f"; longest function {longest.path}:{longest.name} {longest.lines} lines"
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_FOLDERS))
    parser.add_argument("--max-module", type=int, default=MAX_MODULE)
    parser.add_argument("--max-function", type=int, default=MAX_FUNCTION)
    args = parser.parse_args(argv)
    try:
        problems, summary = check(args.paths, args.max_module, args.max_function)
    except FileNotFoundError as e:
        print(f"check_sizes: {e}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if problems:
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
