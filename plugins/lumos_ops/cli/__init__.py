"""The ``lumos`` command line.

Every module of this package that defines ``register(subparsers)`` contributes sub-commands; the
module adds a parser and sets ``func`` (called with the parsed ``argparse.Namespace``, returning an
exit code). ``lumos_ops.cli.__main__.COMMANDS`` names the module and help line of each command, so
only the module of the command being run is imported; heavy imports (torch, astropy, pandas,
SQLAlchemy, boto3) happen inside ``func``.
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


def _unlisted_modules(listed: set[str]) -> list[str]:
    """Modules of this package with sub-commands that ``COMMANDS`` does not list (found by name)."""
    return [info.name for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
            if not info.name.startswith("_") and info.name not in listed]


def _register(subparsers: argparse._SubParsersAction, module_name: str) -> None:  # type: ignore[type-arg]
    register = getattr(importlib.import_module(f"{__name__}.{module_name}"), "register", None)
    if callable(register):
        register(subparsers)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Parser of the ``lumos`` command.

    Parameters
    ----------
    command : str or None
        The sub-command about to run: only its module is imported and registered; the other
        commands get a placeholder with their help line. None imports every module (the full
        parser, e.g. for documentation and tests).
    """
    from lumos_ops.cli.__main__ import COMMANDS

    parser = argparse.ArgumentParser(
        prog="lumos",
        description="LUMOS galaxy photometry: simulate, measure, train, validate and run the nightly pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"lumos-ops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    listed = {module for module, _ in COMMANDS.values()}
    chosen = COMMANDS[command][0] if command in COMMANDS else None
    modules = sorted(listed) if command is None else [chosen] if chosen else []
    if chosen is None:
        modules += _unlisted_modules(listed)  # help, or a command only such a module knows
    for module in modules:
        _register(subparsers, module)
    for name, (_, help_line) in sorted(COMMANDS.items()):
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=help_line)
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lumos`` console script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv) or "")
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
    except KeyboardInterrupt:
        print(f"lumos {args.command}: interrupted", file=sys.stderr)
        return 130
    except LumosError as exc:
        print(f"lumos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = database_unreachable(exc)
        if message is None:
            raise
        print(f"lumos {args.command}: error: {message}", file=sys.stderr)
        return 1


def database_unreachable(exc: BaseException) -> str | None:
    """One line for an error that says the database cannot be reached (a refused, closed or lost
    connection: :func:`lumos_ops.pipeline.database.connection_lost`), with what to do; None for any
    other error. Nothing is imported for it unless the command loaded the database driver."""
    if "psycopg2" not in sys.modules:
        return None
    from lumos_ops.pipeline.database import connection_lost

    reason = connection_lost(exc)
    if reason is None:
        return None
    return (f"the database cannot be reached ({reason}); start it (`lumos db start`) or check --db-url / "
            "$LUMOS_DATABASE_URL, then run the command again")


