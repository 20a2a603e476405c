"""``reports/lumos/psf-beta/fit_on_calibrators.py``: the residual fit that picks a Moffat β per exposure,
within a disc around each galaxy with a sloped sky (``--window``)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "reports" / "lumos" / "psf-beta" / "fit_on_calibrators.py"
SIZE = 60
FWHM = 3.0  # pixels
BETAS = (3.0, 3.5, 4.0, 4.5, 5.0)


def _module():
    spec = importlib.util.spec_from_file_location("psf_beta_fit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _moffat(beta: float, n: int) -> np.ndarray:
    """``n`` unit-flux round Moffat profiles of FWHM :data:`FWHM` at the stamp centre, sampled on a 5 x 5
    sub-grid of each pixel."""
    sub = (np.arange(5) - 2) / 5.0
    grid = np.arange(SIZE) - SIZE // 2
    x = (grid[None, :, None, None] + sub[None, None, None, :])
    y = (grid[:, None, None, None] + sub[None, None, :, None])
    alpha = FWHM / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    image = ((1.0 + (x**2 + y**2) / alpha**2) ** -beta).mean(axis=(2, 3))
    return np.broadcast_to(image / image.sum(), (n, SIZE, SIZE)).copy()


class _Context:
    """The attributes of a measurement context that the window reads."""

    def __init__(self, n: int):
        import pandas as pd

        self.catalog = pd.DataFrame({"r50": np.full(n, 0.01)})
        self.exposure = type("Exposure", (), {"pixel_scale": 1.0, "psf_fwhm": FWHM})()
        self.stamps = type("Stamps", (), {"dx": np.zeros(n), "dy": np.zeros(n)})()


@pytest.mark.parametrize("beta", [3.5, 4.5])
def test_the_windowed_fit_finds_the_true_beta_on_a_sloped_sky(beta):
    module = _module()
    n, rng = 40, np.random.default_rng(3)
    grid = np.arange(SIZE) - SIZE // 2
    slope = 0.002 * grid[None, :] - 0.001 * grid[:, None]
    data = 800.0 * _moffat(beta, n) + 0.3 + slope[None] + rng.normal(0.0, 0.05, (n, SIZE, SIZE))
    usable = np.ones(data.shape, dtype=bool)
    window = module._window(_Context(n), np.arange(n), SIZE)
    chi2 = [module._fit(_moffat(b, n), data, usable, np.full(n, 0.05**2), window)[0] for b in BETAS]
    assert BETAS[int(np.argmin(chi2))] == beta


def test_light_outside_the_window_does_not_reach_the_fit():
    """The disc holds 3 FWHM + 2 half-light radii + 6 px of each galaxy; what lies beyond, another
    source's wings or the sky's structure, moves the whole-stamp fit but not the windowed one."""
    module = _module()
    n, rng = 10, np.random.default_rng(4)
    window = module._window(_Context(n), np.arange(n), SIZE)
    grid = np.arange(SIZE) - SIZE // 2
    radius = np.sqrt(grid[None, :] ** 2 + grid[:, None] ** 2)
    np.testing.assert_array_equal(window[0], radius <= 3 * FWHM + 2 * 0.01 + 6.0)
    data = 800.0 * _moffat(3.5, n) + rng.normal(0.0, 0.05, (n, SIZE, SIZE))
    lit = data + np.where(window, 0.0, 0.5 * np.exp(-0.5 * ((grid[None, :] - 20) ** 2 + grid[:, None] ** 2) / 16.0))
    usable, variance, model = np.ones(data.shape, dtype=bool), np.full(n, 0.05**2), _moffat(4.0, n)
    for fit_window in (window, None):
        before = module._fit(model, data, usable, variance, fit_window)
        after = module._fit(model, lit, usable, variance, fit_window)
        if fit_window is None:
            assert after[0] > before[0] + 100.0
        else:
            assert after[0] == pytest.approx(before[0], rel=1e-9)
            np.testing.assert_allclose(after[1], before[1], rtol=1e-9)
