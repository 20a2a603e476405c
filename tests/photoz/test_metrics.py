"""Photo-z metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photoz.metrics import best_fraction_mask, binned_photoz_metrics, delta_z, nmad, photoz_metrics

# dz = (-0.018, -0.01, 0, 0.01, 0.03) with z_spec = 1: z_phot = 1 + 2 dz.
DZ = np.array([-0.018, -0.01, 0.0, 0.01, 0.03])
ZSPEC = np.ones(5)
ZPHOT = 1.0 + 2.0 * DZ


def test_delta_z() -> None:
    np.testing.assert_allclose(delta_z(ZPHOT, ZSPEC), DZ, atol=1e-15)
    np.testing.assert_allclose(delta_z(np.array([0.5]), np.array([0.0])), [0.5])
    with pytest.raises(LumosValueError, match="shape"):
        delta_z(ZPHOT, ZSPEC[:4])


def test_metrics_by_hand() -> None:
    m = photoz_metrics(ZPHOT, ZSPEC)
    # numpy linear percentiles on 5 points: q16 at position 0.64, q84 at position 3.36.
    q16 = -0.018 + 0.64 * 0.008
    q84 = 0.01 + 0.36 * 0.02
    assert m["sigma68"] == pytest.approx(0.5 * (q84 - q16))
    assert m["sigma68"] == pytest.approx(0.01504)
    assert m["nmad"] == pytest.approx(1.4826 * 0.01)  # median |dz - 0| = 0.01
    assert m["outlier_fraction"] == pytest.approx(0.2)  # only 0.03 exceeds 0.02
    assert m["bias"] == pytest.approx(0.0, abs=1e-15)
    assert m["mean"] == pytest.approx(0.0024)
    assert m["n"] == 5 and m["n_missing"] == 0
    assert photoz_metrics(ZPHOT, ZSPEC, outlier_threshold=0.005)["outlier_fraction"] == pytest.approx(0.8)
    assert photoz_metrics(ZPHOT, ZSPEC, outlier_threshold=0.15)["outlier_fraction"] == 0.0


def test_missing_values_are_counted_not_used() -> None:
    m = photoz_metrics(np.append(ZPHOT, np.nan), np.append(ZSPEC, 1.0))
    assert m["n"] == 5 and m["n_missing"] == 1 and m["sigma68"] == pytest.approx(0.01504)
    empty = photoz_metrics(np.array([np.nan]), np.array([1.0]))
    assert empty["n"] == 0 and np.isnan(empty["sigma68"]) and np.isnan(empty["outlier_fraction"])
    assert np.isnan(nmad(np.array([])))
    with pytest.raises(LumosValueError, match="outlier_threshold"):
        photoz_metrics(ZPHOT, ZSPEC, outlier_threshold=-1.0)


def test_best_fraction_mask() -> None:
    quality = np.array([3.0, 1.0, np.nan, 2.0, 5.0])
    np.testing.assert_array_equal(best_fraction_mask(quality, 0.5), [False, True, False, True, False])
    np.testing.assert_array_equal(
        best_fraction_mask(quality, 0.5, larger_is_better=True), [True, False, False, False, True]
    )
    assert best_fraction_mask(quality, 1.0).sum() == 4
    assert best_fraction_mask(quality, 0.1).sum() == 1
    with pytest.raises(LumosValueError, match="fraction"):
        best_fraction_mask(quality, 0.0)


def test_binned_metrics_by_hand() -> None:
    i_auto = np.array([18.0, 18.5, 21.0, 21.2, 22.9])
    quality = np.array([1.0, 2.0, 3.0, 1.0, 0.5])
    table = binned_photoz_metrics(ZPHOT, ZSPEC, i_auto, bins=(17.5, 20.0, 23.0), quality=quality)
    assert list(table["bin"]) == ["all", "17.5-20", "20-23"] * 2
    full = table[table.fraction == 1.0].set_index("bin")
    assert full.loc["all", "n"] == 5 and full.loc["17.5-20", "n"] == 2 and full.loc["20-23", "n"] == 3
    assert full.loc["17.5-20", "bias"] == pytest.approx(-0.014)
    assert full.loc["20-23", "outlier_fraction"] == pytest.approx(1 / 3)
    half = table[table.fraction == 0.5].set_index("bin")
    # best half of all five (ceil(2.5) = 3): qualities 0.5, 1, 1 -> dz 0.03, -0.018, 0.01
    assert half.loc["all", "n"] == 3 and half.loc["all", "bias"] == pytest.approx(0.01)
    assert half.loc["17.5-20", "n"] == 1 and half.loc["17.5-20", "bias"] == pytest.approx(-0.018)
    assert half.loc["20-23", "n"] == 2 and half.loc["20-23", "mean"] == pytest.approx(0.02)
    with pytest.raises(LumosValueError, match="quality"):
        binned_photoz_metrics(ZPHOT, ZSPEC, i_auto)
    with pytest.raises(LumosValueError, match="bins"):
        binned_photoz_metrics(ZPHOT, ZSPEC, i_auto, bins=(20.0, 19.0), fractions=(1.0,))
