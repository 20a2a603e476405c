"""Shared fixtures of the photo-z tests: the default template grid and a small simulated catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumos_ops.photoz.templates import TemplateGrid, build_template_grid
from lumos_ops.sim.population import draw_galaxies, njy_columns


@pytest.fixture(scope="session")
def grid() -> TemplateGrid:
    """The default 40-band grid (13 types x 11 E(B-V) x 360 redshifts), built once."""
    return build_template_grid()


@pytest.fixture(scope="session")
def galaxies() -> pd.DataFrame:
    """300 galaxies drawn exactly as the survey simulator draws its catalogue (with ref_id)."""
    table = draw_galaxies(np.random.default_rng(11), 300)
    table.insert(0, "ref_id", np.arange(1000, 1300))
    return table


@pytest.fixture(scope="session")
def true_fluxes(galaxies: pd.DataFrame) -> np.ndarray:
    """True 40-band fluxes (nJy), shape (300, 40)."""
    return galaxies[njy_columns()].to_numpy()
