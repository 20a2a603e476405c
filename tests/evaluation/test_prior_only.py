"""The pixel-free prior-only reference (evaluation/prior_only.py)."""

import numpy as np
import pytest

from lumos_ops.evaluation.prior_only import prior_only_flux
from lumos_ops.exceptions import LumosValueError


def test_prior_recovers_a_power_law_and_fails_on_independent_fluxes():
    rng = np.random.default_rng(0)
    n = 2000
    band = np.where(np.arange(n) % 3 == 0, "NB455", "NB685")
    i_auto = rng.uniform(18, 23, n)
    flux = np.where(band == "NB455", 2.0, 5.0) * 10 ** (-0.4 * (i_auto - 20))
    pred = prior_only_flux(band, i_auto, flux, np.arange(n))
    np.testing.assert_allclose(pred, flux, rtol=1e-6)
    shuffled = rng.permutation(flux)
    rel = prior_only_flux(band, i_auto, shuffled, np.arange(n)) / shuffled - 1
    assert 0.5 * np.subtract(*np.percentile(rel, [84, 16])) > 0.5
    with pytest.raises(LumosValueError, match="same shape"):
        prior_only_flux(band[:3], i_auto, flux, np.arange(n))
