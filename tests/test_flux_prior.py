"""The reference flux prior: its sampling density is what it draws, and its weights flatten it."""

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.flux_prior import REFERENCE_PRIOR, ReferencePrior, prior_from_metadata


def test_sampling_density_matches_the_draws():
    prior = ReferencePrior(low=-20.0, high=500.0, asinh_scale=4.0, flat_fraction=0.3)
    f = prior.sample(np.random.default_rng(0), 400_000)
    assert f.min() >= -20.0 and f.max() <= 500.0
    edges = np.array([-20.0, -5.0, 0.0, 3.0, 10.0, 30.0, 100.0, 300.0, 500.0])
    counts = np.histogram(f, bins=edges)[0] / f.size
    grid = np.linspace(-20.0, 500.0, 2_000_001)
    dens = prior.sampling_density(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    assert cdf[-1] == pytest.approx(1.0, abs=1e-6)
    expected = np.diff(np.interp(edges, grid, cdf))
    assert np.all(np.abs(counts - expected) <= 4 * np.sqrt(expected / f.size) + 1e-4), (counts, expected)


def test_importance_weights_flatten_the_draws():
    prior = REFERENCE_PRIOR
    f = prior.sample(np.random.default_rng(1), 400_000)
    w = prior.importance_weights(f)
    assert w.mean() == pytest.approx(1.0, abs=0.01)
    hist = np.histogram(f, bins=12, range=(prior.low, prior.high), weights=w)[0] / w.sum()
    np.testing.assert_allclose(hist, 1.0 / 12, rtol=0.05)
    unweighted = np.histogram(f, bins=12, range=(prior.low, prior.high))[0] / f.size
    assert unweighted[0] > 3 * unweighted[-1]  # the draws themselves are far from flat
    assert prior.importance_weights(np.array([prior.high + 1.0]))[0] == 0.0


def test_round_trip_and_metadata():
    prior = ReferencePrior(low=-10.0, high=100.0)
    assert ReferencePrior.from_dict(prior.to_dict()) == prior
    assert prior_from_metadata({"flux_prior": prior.to_dict()}) == prior
    assert prior_from_metadata({"flux_prior": {"kind": "population"}}) is None
    assert prior_from_metadata({}) is None


@pytest.mark.parametrize("kwargs", [{"low": 1.0}, {"high": -1.0}, {"asinh_scale": 0.0}, {"flat_fraction": 1.5}])
def test_invalid_priors_are_refused(kwargs):
    with pytest.raises(LumosValueError):
        ReferencePrior(**kwargs)
