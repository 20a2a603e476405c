"""The table of LUMOS weights shipped in ``lumos_ops/models/``: one row per checkpoint.

Everything that names a shipped model (``SHIPPED_MODELS``, the ``--model`` help of the CLI, the
registry's shipped versions) reads this table; ``tests/lumos/test_shipped_model.py`` checks every
row against its file (SHA-256, architecture, recipe). Importing it costs nothing (no torch).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["ShippedWeights", "SHIPPED_WEIGHTS", "MODELS_DIR", "shipped_models", "shipped_models_help"]

MODELS_DIR: Path = Path(__file__).resolve().parent.parent / "models"
"""Directory of the weights shipped with the package."""


@dataclasses.dataclass(frozen=True)
class ShippedWeights:
    """One shipped checkpoint.

    Attributes
    ----------
    name : str
        What ``--model`` and ``load_checkpoint`` accept (``"default"`` is the nightly default).
    file : str
        File in :data:`MODELS_DIR`; its stem is the model version recorded with measurements.
    arch : str
        Network architecture (``lumos_ops.lumos.config`` architectures).
    recipe : str
        ``lumos_ops.lumos.recipe.RECIPES`` entry that reproduces it (``lumos train --recipe``).
    sha256 : str
        SHA-256 of the file.
    status : str
        ``default`` (what runs when nothing is configured) or ``companion`` (kept for a
        comparison the reports make).
    summary : str
        One line for help texts.
    dropped_inputs : tuple of str
        Scalar inputs the recipe's network reads and the shipped file does not: the file is the
        recipe's output passed through ``lumos model drop-input`` (:mod:`lumos_ops.lumos.drop_inputs`).
    """

    name: str
    file: str
    arch: str
    recipe: str
    sha256: str
    status: str
    summary: str
    dropped_inputs: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """Model version recorded with its measurements (the file's stem)."""
        return Path(self.file).stem


SHIPPED_WEIGHTS: tuple[ShippedWeights, ...] = (
    ShippedWeights(
        name="default", file="lumos-fast-mf-v12-nobg.pt", arch="fast-mf", recipe="fast-mf-v12",
        sha256="4d1910b6729fcdf3b3a5090d5aea80151aaad579939e4b5e5490686d19150640", status="default",
        summary="likelihood network under the reference flux prior anchored on the matched-filter flux, all 40 narrow "
                "bands x 2 epochs, blind to the frame's sky level (models/MODEL_CARD.md)",
        dropped_inputs=("background",),
    ),
    ShippedWeights(
        name="fast-noccd", file="lumos-fast-mf-noccd-v12-nobg.pt", arch="fast-mf", recipe="fast-mf-noccd-v12",
        sha256="048555cd535b4bf0b67c6b76201a5cbfb12357ecca62cf5ca6c3269a9e4551a1", status="companion",
        summary="the default's recipe without the CCD-position input (the PIT comparison of lumos validate)",
        dropped_inputs=("background",),
    ),
)
"""Every shipped checkpoint."""


def shipped_models() -> dict[str, str]:
    """``{name: file}`` of :data:`SHIPPED_WEIGHTS`."""
    return {w.name: w.file for w in SHIPPED_WEIGHTS}


def shipped_models_help() -> str:
    """The shipped names with their versions, for ``--model`` help texts."""
    return "; ".join(f"{w.name} ({w.version})" for w in SHIPPED_WEIGHTS)
