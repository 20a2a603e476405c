"""The Bayes-optimal reference and the pull width (evaluation/bayes_reference.py)."""

import numpy as np
import pytest

from lumos_ops.evaluation.bayes_reference import bayes_optimal_median, pull_width
from lumos_ops.exceptions import LumosValueError


def test_bayes_reference_is_the_gaussian_posterior_median():
    # Gaussian prior N(50, 10) and measurements N(f, 10 * 1.5) whose reported errors are 1.5x too
    # small: the calibrated posterior median is the precision-weighted mean (50 + f_meas) / 2.
    rng = np.random.default_rng(1)
    n = 20000
    truth = rng.normal(50.0, 10.0, n)
    err = np.full(n, 10.0 / 1.5)
    measured = truth + rng.normal(0.0, 10.0, n)
    band = np.where(np.arange(n) % 2 == 0, "NB455", "NB685")
    assert pull_width(measured, err, truth) == pytest.approx(1.5, rel=0.03)
    ref = bayes_optimal_median(band, measured, err, truth, np.arange(n) // 2)
    off = np.abs(ref - 0.5 * (50.0 + measured))  # sampling noise of the empirical prior, worst in its tails
    assert np.median(off) < 0.2 and np.percentile(off, 99) < 1.0
    assert np.std(ref - truth) == pytest.approx(10.0 / np.sqrt(2), rel=0.03)
    assert abs(np.median(ref - truth)) < 0.15
    measured[3] = np.nan
    assert np.isnan(bayes_optimal_median(band, measured, err, truth, np.arange(n))[3])
    with pytest.raises(LumosValueError, match="same shape"):
        bayes_optimal_median(band[:3], measured, err, truth, np.arange(n))
