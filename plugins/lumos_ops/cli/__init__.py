"""The ``lumos`` command line.

Every module of this package that defines ``register(subparsers)`` contributes sub-commands; the
module adds a parser and sets ``func`` (called with the parsed ``argparse.Namespace``, returning an
exit code). Heavy imports (torch, astropy) happen inside ``func``, so ``lumos --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from lumos_ops import __version__
from lumos_ops.exceptions import LumosError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Parser with every sub-command registered by the modules of this package."""
    parser = argparse.ArgumentParser(
        prog="lumos",
        description="LUMOS galaxy photometry: simulate, measure, train, validate and run the nightly pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"lumos-ops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lumos`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LumosError as exc:
        print(f"lumos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lumos {args.command}: interrupted", file=sys.stderr)
        return 130


