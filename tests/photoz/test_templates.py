"""The template grid reuses the simulator's SEDs and is validated."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import LumosValueError
from lumos_ops.photoz.templates import TemplateGrid, TemplateGridConfig, build_template_grid
from lumos_ops.sim.seds import galaxy_band_fluxes, mag_to_njy


def test_grid_models_are_the_simulator_fluxes_per_njy_of_i_band(grid: TemplateGrid) -> None:
    assert grid.models.shape == (13, 11, 360, 40)
    assert grid.bands == NB_BANDS
    assert grid.z[0] == pytest.approx(0.005) and grid.z[-1] == pytest.approx(1.8)
    t, e, k = 5, 3, 117
    expected = galaxy_band_fluxes(i_auto=21.0, z=grid.z[k], sed_type=grid.sed_type[t], ebv=grid.ebv[e])[0]
    np.testing.assert_allclose(grid.models[t, e, k] * mag_to_njy(21.0), expected, rtol=1e-12)
    assert grid.flat_models().shape == (13 * 11 * 360, 40)
    assert not grid.models.flags.writeable


def test_select_bands_reorders_and_rejects_unknown(grid: TemplateGrid) -> None:
    sub = grid.select_bands(["NB845", "NB455"])
    np.testing.assert_array_equal(sub.models[..., 0], grid.models[..., -1])
    np.testing.assert_array_equal(sub.models[..., 1], grid.models[..., 0])
    with pytest.raises(LumosValueError, match="NB999"):
        grid.select_bands(["NB999"])


def test_build_for_a_band_subset_is_cached() -> None:
    config = TemplateGridConfig(sed_types=(0.0, 1.0), ebvs=(0.0,), z_min=0.1, z_max=0.3, z_step=0.1)
    a = build_template_grid(config, bands=("NB685", "NB455"))
    assert a.models.shape == (2, 1, 3, 2)
    assert build_template_grid(config, bands=("NB685", "NB455")) is a
    with pytest.raises(LumosValueError, match="NB123"):
        build_template_grid(config, bands=("NB123",))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sed_types": (0.0, 3.5)}, "sed_types"),
        ({"ebvs": ()}, "ebvs"),
        ({"z_min": 0.5, "z_max": 0.4}, "z_min"),
        ({"z_max": 2.5}, "z_max"),
        ({"z_step": 0.0}, "z_step"),
    ],
)
def test_config_rejects_bad_axes(kwargs: dict, name: str) -> None:
    with pytest.raises(LumosValueError, match=name):
        TemplateGridConfig(**kwargs)
