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
    """

    name: str
    file: str
    arch: str
    recipe: str
    sha256: str
    status: str
    summary: str

    @property
    def version(self) -> str:
        """Model version recorded with its measurements (the file's stem)."""
        return Path(self.file).stem


SHIPPED_WEIGHTS: tuple[ShippedWeights, ...] = (
    ShippedWeights(
        name="default", file="lumos-fast-v11.pt", arch="fast", recipe="fast-v11",
        sha256="0f0d9af088801d9485e2c28315c12656181e47eda424b5ad933915b554fca93f", status="default",
        summary="likelihood network under the reference flux prior, all 40 narrow bands x 2 epochs (models/MODEL_CARD.md)",
    ),
    ShippedWeights(
        name="fast-noccd", file="lumos-fast-noccd-v11.pt", arch="fast", recipe="fast-noccd-v11",
        sha256="e87940e394b5b6d9a1691488f29fe0d7d7abaa2ad8adf33a9da2292ae34bfdb2", status="companion",
        summary="the default's recipe without the CCD-position input (the PIT comparison of lumos validate)",
    ),
)
"""Every shipped checkpoint."""


def shipped_models() -> dict[str, str]:
    """``{name: file}`` of :data:`SHIPPED_WEIGHTS`."""
    return {w.name: w.file for w in SHIPPED_WEIGHTS}


def shipped_models_help() -> str:
    """The shipped names with their versions, for ``--model`` help texts."""
    return "; ".join(f"{w.name} ({w.version})" for w in SHIPPED_WEIGHTS)
