"""Module sizes and the longest functions of a Python tree (the house-order measurements).

Usage::

    python scripts/function_sizes.py [ROOT ...] [--top N]

Prints the ``N`` largest modules (lines) and the ``N`` longest functions (lines from ``def`` to the
last line of the body, decorators excluded) under each ROOT (default ``plugins/lumos_ops``).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

__all__ = ["function_lengths", "module_lengths", "main"]


def module_lengths(root: Path) -> list[tuple[int, str]]:
    """Lines of every ``*.py`` file below ``root``, longest first."""
    out = [(len(path.read_text().splitlines()), str(path)) for path in sorted(root.rglob("*.py"))]
    return sorted(out, reverse=True)


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """Lines of every function and method below ``root`` as ``(lines, "path:line name")``, longest first."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def main(argv: list[str] | None = None) -> None:
    """Print the module and function tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("plugins/lumos_ops")])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    for root in args.roots:
        modules = module_lengths(root)
        functions = function_lengths(root)
        print(f"# {root}: {len(modules)} modules, {sum(n for n, _ in modules)} lines, {len(functions)} functions")
        print(f"functions over 60 lines: {sum(n > 60 for n, _ in functions)}")
        print("## largest modules")
        for n, name in modules[: args.top]:
            print(f"{n:6d}  {name}")
        print("## longest functions")
        for n, name in functions[: args.top]:
            print(f"{n:6d}  {name}")


if __name__ == "__main__":
    main()
