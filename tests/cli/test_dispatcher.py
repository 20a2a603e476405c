"""The ``lumos`` dispatcher: help, version, and one-line errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lumos_ops import __version__
from lumos_ops.cli import build_parser, main


def test_help_lists_registered_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "usage: lumos" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    for name, sub in actions[0].choices.items():
        assert sub.format_help().startswith(f"usage: lumos {name}"), name


def test_console_script_version() -> None:
    result = subprocess.run([sys.executable, "-m", "lumos_ops.cli", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in result.stdout
