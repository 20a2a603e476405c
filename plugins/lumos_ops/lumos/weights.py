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
        name="default", file="lumos-fast-mf-v12-nobg-ft.pt", arch="fast-mf", recipe="fast-mf-v12-nobg-ft",
        sha256="8056ec07a8494df4f56fc7266dac65fe778d979eeadc864e27b1fbcb8b274195", status="default",
        summary="likelihood network under the reference flux prior anchored on the matched-filter flux, all 40 narrow "
                "bands x 2 epochs, blind to the frame's sky level (models/MODEL_CARD.md)",
    ),
    ShippedWeights(
        name="fast-noccd", file="lumos-fast-mf-noccd-v12-nobg-ft.pt", arch="fast-mf", recipe="fast-mf-noccd-v12-nobg-ft",
        sha256="8d7d401450579bca09396103c4b7bf94d8fe2e6456dd0eaa6c9865c8482a64c6", status="companion",
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
