"""Colour-histogram widths (sigma68, sigma95) and the comparison of two photometries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photoz.colours import colour, colour_width, compare_colour_widths


def test_colour_values() -> None:
    a = np.array([10.0, 1.0, -1.0, np.nan, 4.0])
    b = np.array([1.0, 10.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(colour(a, b), [-2.5, 2.5, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(colour(a, b, kind="ratio"), [10.0, 0.1, -1.0, np.nan, np.nan])
    with pytest.raises(ValueError):
        colour(a, b, kind="hue")
    with pytest.raises(LumosValueError, match="shape"):
        colour(a, b[:3])


def test_widths_of_an_even_grid() -> None:
    values = np.linspace(-1.0, 1.0, 201)  # numpy percentiles are exact on an even grid
    w = colour_width(np.append(values, np.nan))
    assert w.sigma68 == pytest.approx(0.68) and w.sigma95 == pytest.approx(0.95)
    assert w.median == pytest.approx(0.0, abs=1e-12) and w.n == 201 and w.n_dropped == 1
    truth = np.random.default_rng(0).normal(size=201)
    shifted = colour_width(values + truth, truth=truth)
    assert shifted.sigma68 == pytest.approx(0.68) and shifted.sigma95 == pytest.approx(0.95)
    assert np.isnan(colour_width(np.array([np.nan])).sigma68)


def test_noise_broadens_the_histogram_as_expected() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    true_a = rng.uniform(50.0, 150.0, n)
    true_b = true_a * rng.uniform(0.8, 1.2, n)
    truth = pd.DataFrame({"NB785": true_a, "NB795": true_b})
    phot = {}
    for name, snr in (("good", 40.0), ("bad", 20.0)):
        phot[name] = pd.DataFrame({"NB785": true_a * (1 + rng.normal(size=n) / snr),
                                   "NB795": true_b * (1 + rng.normal(size=n) / snr)})
    widths = compare_colour_widths(phot, "NB785", "NB795", truth=truth).set_index("name")
    # Two bands with relative error 1/snr: sigma(colour) = 1.0857 * sqrt(2) / snr.
    for name, snr in (("good", 40.0), ("bad", 20.0)):
        assert widths.loc[name, "sigma68"] == pytest.approx(1.0857 * np.sqrt(2) / snr, rel=0.05)
        assert widths.loc[name, "sigma95"] == pytest.approx(1.96 * 1.0857 * np.sqrt(2) / snr, rel=0.07)
    raw = compare_colour_widths(phot, "NB785", "NB795").set_index("name")
    assert raw.loc["good", "sigma68"] < raw.loc["bad", "sigma68"]
    assert raw.loc["good", "sigma68"] > widths.loc["good", "sigma68"]  # intrinsic colour spread adds


def test_common_sources_and_errors() -> None:
    a = pd.DataFrame({"NB455": [1.0, 2.0, -1.0], "NB465": [1.0, 1.0, 1.0]}, index=[1, 2, 3])
    b = pd.DataFrame({"NB455": [1.0, 2.0, 2.0], "NB465": [1.0, 1.0, 1.0]}, index=[1, 2, 3])
    common = compare_colour_widths({"a": a, "b": b}, "NB455", "NB465").set_index("name")
    assert common.loc["a", "n"] == 2 and common.loc["b", "n"] == 2
    each = compare_colour_widths({"a": a, "b": b}, "NB455", "NB465", common=False).set_index("name")
    assert each.loc["a", "n"] == 2 and each.loc["b", "n"] == 3
    with pytest.raises(LumosValueError, match="NB999"):
        compare_colour_widths({"a": a}, "NB455", "NB999")
    with pytest.raises(LumosValueError, match="at least one"):
        compare_colour_widths({}, "NB455", "NB465")
