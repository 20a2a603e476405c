"""``--survey FILE`` for the sub-commands that read exposures or interpret bands (no sub-command here)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lumos_ops.survey import Survey

__all__ = ["SURVEY_HELP", "add_survey_option", "survey_from_args"]

SURVEY_HELP = ("survey description file (JSON, `lumos survey init`): bands, epochs, header mapping "
               "(default: $LUMOS_SURVEY, else the built-in PAUS)")


def add_survey_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--survey FILE`` to a sub-command's parser."""
    parser.add_argument("--survey", metavar="FILE", default=None, help=SURVEY_HELP)


def survey_from_args(args: argparse.Namespace) -> Survey:
    """The survey selected by ``args.survey``, else ``LUMOS_SURVEY``, else PAUS."""
    from lumos_ops.survey import resolve_survey

    return resolve_survey(getattr(args, "survey", None))
