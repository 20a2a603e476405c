"""Bias (eq. 17) and sigma68 (eq. 18) machinery of lumos_ops.evaluation.method_comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lumos_ops.evaluation.method_comparison import compare_methods, comparison_to_dict, plot_comparison
from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import bias, relative_error, sigma68


def test_bias_and_sigma68_of_a_known_distribution() -> None:
    rng = np.random.default_rng(0)
    rel = rng.normal(0.03, 0.2, 200_000)
    assert bias(rel) == pytest.approx(0.03, abs=0.002)
    assert sigma68(rel) == pytest.approx(0.2, rel=0.01)
    # Outliers move the standard deviation but hardly sigma68.
    rel[:2000] = 50.0
    assert sigma68(rel) == pytest.approx(0.2, rel=0.03)
    assert np.isnan(bias(np.array([np.nan]))) and np.isnan(sigma68(np.array([])))


def test_relative_error_handles_nan_and_non_positive_truth() -> None:
    rel = relative_error(np.array([2.0, np.nan, 1.0]), np.array([1.0, 1.0, 0.0]))
    assert rel[0] == 1.0 and np.isnan(rel[1]) and np.isnan(rel[2])
    with pytest.raises(LumosValueError, match="same shape"):
        relative_error(np.ones(2), np.ones(3))


def test_compare_methods_bins_and_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 4000
    mag = rng.uniform(18, 23, n)
    truth = 10 ** (-0.4 * (mag - 23.0)) * 3.0
    noise = 0.05 * 10 ** (0.4 * (mag - 18))  # relative scatter grows with magnitude
    fluxes = {
        "good": truth * (1 + rng.normal(0, 1, n) * noise),
        "biased": truth * (1.1 + rng.normal(0, 1, n) * noise),
    }
    fluxes["good"][:10] = np.nan
    metrics = compare_methods(fluxes, truth, mag, bins=(18, 19, 20, 21, 22, 23), n_boot=50)
    overall = metrics.overall.set_index("method")
    assert overall.loc["good", "n_missing"] == 10 and overall.loc["biased", "n"] == n
    assert overall.loc["biased", "bias"] == pytest.approx(0.1, abs=0.03)
    binned = metrics.binned[metrics.binned["method"] == "good"]
    assert binned["n"].sum() == n - 10
    assert np.all(np.diff(binned["sigma68"].to_numpy()) > 0)
    expected = 0.05 * 10 ** (0.4 * (binned["mag_mid"].to_numpy() - 18))
    np.testing.assert_allclose(binned["sigma68"], expected, rtol=0.25)
    assert (binned["sigma68_err"] > 0).all()
    report = comparison_to_dict(metrics)
    json.dumps(report, allow_nan=False)
    assert set(report["overall"]) == {"good", "biased"} and len(report["binned"]["good"]) == 5
    path = plot_comparison(metrics, tmp_path / "fig.png", title="test")
    assert Path(path).stat().st_size > 1000


def test_compare_methods_rejects_bad_bins() -> None:
    with pytest.raises(LumosValueError, match="bins"):
        compare_methods({"a": np.ones(3)}, np.ones(3), np.ones(3), bins=(20, 19))
    with pytest.raises(LumosValueError, match="at least one method"):
        compare_methods({}, np.ones(3), np.ones(3))
