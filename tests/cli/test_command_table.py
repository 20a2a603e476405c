"""``lumos_ops.cli.__main__.COMMANDS``: every command's module and help line, imported only when run."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from lumos_ops.cli import build_parser
from lumos_ops.cli.__main__ import COMMANDS


def _choices(parser) -> dict:
    return next(a for a in parser._actions if a.dest == "command").choices


def test_each_listed_command_is_registered_by_its_module() -> None:
    for name, (module, help_line) in COMMANDS.items():
        subparsers = argparse.ArgumentParser(prog="lumos").add_subparsers()
        importlib.import_module(f"lumos_ops.cli.{module}").register(subparsers)
        assert name in subparsers.choices and help_line, (name, module)
        assert _choices(build_parser(name))[name].format_help().startswith(f"usage: lumos {name}")
    assert set(COMMANDS) <= set(_choices(build_parser()))


def test_running_a_command_imports_only_its_module() -> None:
    code = (
        "import sys\n"
        "from lumos_ops.cli import build_parser\n"
        "parser = build_parser('measure')\n"
        "print(sorted(m for m in sys.modules if m.startswith('lumos_ops.cli.')"
        " or m.split('.')[0] in {'torch', 'pandas', 'astropy', 'sqlalchemy', 'boto3', 'airflow'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    imported = set(eval(out))  # noqa: S307 - a list literal printed by the child above
    others = {f"lumos_ops.cli.{module}" for module, _ in COMMANDS.values()} - {"lumos_ops.cli.measure"}
    assert "lumos_ops.cli.measure" in imported and not imported & others, imported
    assert not {m for m in imported if not m.startswith("lumos_ops.")}, imported
