"""The neighbour leak measured on synthetic blends of isolated targets (lumos_ops.photometry.crosstalk)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumos_ops.bench.synthetic import random_catalog
from lumos_ops.cutouts import cut_stamps
from lumos_ops.measure import render_target_models
from lumos_ops.photometry.crosstalk import MAX_LEAK_ERR, fit_leak, leak_sums
from lumos_ops.photometry.neighbours import fit_neighbours

SIZE = 60
SHAPE = (200, 200)
SKY = 6.0
NOISELESS = 1e-8  # pixel variance of the noiseless frames, (e-/s)^2


def _catalog(positions: list[tuple[float, float]]) -> pd.DataFrame:
    catalog = random_catalog(len(positions), shape=SHAPE, seed=3)
    catalog["x"] = [p[0] for p in positions]
    catalog["y"] = [p[1] for p in positions]
    for column in ("r50", "sersic_n", "q", "pa"):  # one galaxy shape for all
        catalog[column] = catalog[column].iloc[0]
    catalog["r50"] = 0.5
    return catalog


def _frame(catalog: pd.DataFrame, flux: np.ndarray, *, beta: float) -> np.ndarray:
    """A noiseless frame of ``catalog``'s galaxies of ``flux`` (e-/s) drawn with a Moffat PSF of ``beta``
    (FWHM 0.9 arcsec) on a flat sky."""
    stamps = cut_stamps(np.zeros(SHAPE, dtype=np.float32), catalog["x"], catalog["y"], size=SIZE)
    light, _ = render_target_models(catalog, stamps.dx, stamps.dy, psf_fwhm=0.9, psf_beta=beta, size=SIZE)
    image = np.full(SHAPE, SKY)
    for j, f in enumerate(flux):
        image[stamps.y0[j] : stamps.y0[j] + SIZE, stamps.x0[j] : stamps.x0[j] + SIZE] += f * light[j]
    return image.astype(np.float32)


def _models(catalog: pd.DataFrame):
    stamps = cut_stamps(np.zeros(SHAPE, dtype=np.float32), catalog["x"], catalog["y"], size=SIZE)
    models, _ = render_target_models(catalog, stamps.dx, stamps.dy, psf_fwhm=0.9, psf_beta=3.5, size=SIZE)
    return models


@pytest.mark.parametrize("beta", [2.5, 6.0])
def test_an_isolated_galaxy_predicts_what_a_blend_keeps_of_its_neighbours_light(beta: float) -> None:
    """Galaxies drawn with a Moffat PSF of beta 2.5 (broader wings) or 6 (narrower) and measured through
    the beta 3.5 model. A target 5 px from a neighbour four times brighter, fitted jointly
    (``fit_neighbours``), reads its own matched-filter flux plus ``κ c``, ``c`` its neighbour light,
    where ``κ`` is what :func:`leak_sums` measures on the neighbour alone with the target's offset
    (within 6 %). With the broader wings the model ``-(1 - 1/k)`` of the neighbour's factor ``k``
    is 39 % off; with the narrower ones it happens to be as close."""
    target, neighbour = (80.3, 90.6), (85.3, 90.6)
    pair = _catalog([target, neighbour])
    fluxes = np.array([100.0, 400.0])
    fit = fit_neighbours(_frame(pair, fluxes, beta=beta),
                         cut_stamps(_frame(pair, fluxes, beta=beta), pair["x"], pair["y"], size=SIZE),
                         _models(pair), correlation=False)
    assert fit.fitted.all()
    light = fit.contamination[0]
    # each galaxy alone: the target's matched-filter reading, and the neighbour's synthetic blend
    models = _models(pair)
    alone = cut_stamps(_frame(pair.iloc[[0]], fluxes[:1], beta=beta), pair["x"][:1], pair["y"][:1], size=SIZE)
    own = float((models[0] * (alone.data[0] - SKY)).sum() / (models[0] ** 2).sum())
    single = cut_stamps(_frame(pair.iloc[[1]], fluxes[1:], beta=beta), pair["x"][1:], pair["y"][1:], size=SIZE)
    num, den = leak_sums(single.data, np.ones_like(single.data, dtype=bool), models[1:], np.array([SKY]),
                         np.array([NOISELESS]), offsets=((-5, 0),))
    kappa = num[0] / den[0]
    keeps = fit.amplitude[0] - own
    assert abs(keeps) > 0.01 * fluxes[0]  # the leak matters: more than 1 % of the target's flux
    assert keeps == pytest.approx(kappa * light, rel=0.06)
    k_neighbour = float((models[1] * (single.data[0] - SKY)).sum() / (models[1] ** 2).sum()) / fluxes[1]
    modelled = -(1.0 - 1.0 / k_neighbour) * light
    if beta < 3.5:  # broader wings than the model: the factor's model misses by 39 %, the leak by 4 %
        assert abs(modelled - keeps) > 5.0 * abs(kappa * light - keeps)


def test_a_galaxy_that_is_its_model_leaks_nothing() -> None:
    catalog = _catalog([(100.2, 100.7)])
    image = _frame(catalog, np.array([500.0]), beta=3.5)
    stamps = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
    num, den = leak_sums(stamps.data, np.isfinite(stamps.data), _models(catalog), np.array([SKY]),
                         np.array([NOISELESS]))
    assert den[0] > 0 and abs(num[0] / den[0]) < 1e-4


def test_masked_pixels_and_degenerate_stamps_are_left_out() -> None:
    catalog = _catalog([(100.2, 100.7), (60.0, 60.0)])
    image = _frame(catalog, np.array([500.0, 300.0]), beta=2.5)
    stamps = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
    models = _models(catalog)
    usable = np.ones(stamps.data.shape, dtype=bool)
    whole = leak_sums(stamps.data, usable, models, np.full(2, SKY), np.full(2, NOISELESS))
    # a NaN far from the galaxies changes nothing; an all-masked stamp gives nothing
    data = stamps.data.copy()
    data[0, 2, 2] = np.nan
    usable[1] = False
    holed = leak_sums(data, usable, models, np.full(2, SKY), np.full(2, NOISELESS))
    np.testing.assert_allclose(holed[0][0], whole[0][0], rtol=1e-4)
    assert holed[0][1] == 0.0 and holed[1][1] == 0.0
    empty = leak_sums(stamps.data[:0], usable[:0], models[:0], np.zeros(0), np.zeros(0))
    assert empty[0].shape == (0,)


def test_correlated_noise_does_not_read_as_a_leak() -> None:
    """1,000 galaxies that are their models (beta 3.5) on noise smoothed over 7 px, as a reprojected
    frame's is (its autocorrelation sums to 49 pixel variances; the SDSS frames' to 41-51): the
    leak measured under the noise's correlation is 0 within its error; taken as white, the two
    amplitudes' shared noise reads as a leak."""
    from scipy import ndimage

    from lumos_ops.photometry.noise_correlation import noise_correlation

    rng = np.random.default_rng(7)
    n = 1000
    catalog = _catalog([(30.0, 30.0)] * n)
    catalog["r50"] = rng.uniform(0.3, 1.0, n)
    models = _models(catalog)

    def noise(shape):
        white = rng.standard_normal(shape)
        return ndimage.uniform_filter(white, size=(1,) * (len(shape) - 2) + (7, 7), mode="wrap") * 7.0

    # SNR 30 as the white-noise matched filter reads it (below the calibrators' cut of 40), about 4 in truth
    flux = 30.0 * np.sqrt(1.0 / (models**2).sum(axis=(1, 2)))
    data = (flux[:, None, None] * models + noise(models.shape)).astype(np.float32)
    correlation = noise_correlation(noise((1024, 1024)))
    variance = np.full(n, 1.0)
    usable = np.ones(data.shape, dtype=bool)
    measured = fit_leak(*leak_sums(data, usable, models, np.zeros(n), variance, correlation=correlation),
                        min_calibrators=30)
    white = fit_leak(*leak_sums(data, usable, models, np.zeros(n), variance), min_calibrators=30)
    assert abs(measured.kappa) < 3.0 * measured.kappa_err and measured.kappa_err < 0.01
    # the same stamps: the amplitudes' shared noise taken as white reads -1.7 % more
    assert white.kappa < measured.kappa - 0.01


def test_the_pooled_leak_its_error_and_when_it_is_applied() -> None:
    rng = np.random.default_rng(0)
    den = rng.uniform(0.5, 2.0, 200)
    num = -0.025 * den + 0.02 * np.sqrt(den) * rng.standard_normal(200)
    leak = fit_leak(num, den, min_calibrators=30, seed=1)
    assert leak.reliable and leak.n_calibrators == 200
    assert leak.kappa == pytest.approx(-0.025, abs=3 * leak.kappa_err) and 0 < leak.kappa_err < 0.003
    # a few bright calibrators beside a real source (their leak -100 %, 7 sigma out) are left out
    bright = np.full(10, 50.0)
    spoilt = fit_leak(np.concatenate([num, -1.0 * bright]), np.concatenate([den, bright]), min_calibrators=30, seed=1)
    assert num.sum() / den.sum() - (num.sum() + 10 * -50.0) / (den.sum() + 500.0) > 0.5  # what it would have been
    assert spoilt.kappa == pytest.approx(leak.kappa, abs=0.002)
    # too few calibrators, too noisy, or nothing measured: the model stays
    assert not fit_leak(num[:20], den[:20], min_calibrators=30).reliable
    noisy = fit_leak(-0.025 * den + 1.0 * rng.standard_normal(200), den, min_calibrators=30)
    assert noisy.kappa_err > MAX_LEAK_ERR and not noisy.reliable
    none = fit_leak(np.zeros(5), np.zeros(5), min_calibrators=1)
    assert none.n_calibrators == 0 and not none.reliable and np.isnan(none.kappa)


def _direct_leak_sums(data, usable, models, sky, variance, correlation, exptime, offsets):
    """:func:`leak_sums` the long way, pixel by pixel: each estimator's weights from the pseudo-inverse of
    its five templates, their covariance from the weights convolved with the noise correlation
    (zero outside the stamp) plus the target's photon noise."""
    from scipy import signal

    from lumos_ops.photometry.crosstalk import _shifted

    num, den = np.zeros(len(data)), np.zeros(len(data))
    size = data.shape[-1]
    ramp = (np.arange(size) - size // 2) / float(size)
    for i in range(len(data)):
        ok = usable[i] & np.isfinite(data[i])
        d = np.where(ok, data[i] - sky[i], 0.0)
        m = np.where(ok, models[i], 0.0)
        for dx, dy in offsets:
            f = np.where(ok, _shifted(models[i : i + 1], dx, dy)[0], 0.0)
            templates = np.stack([m, f, ok * 1.0, np.where(ok, ramp[None, :], 0.0), np.where(ok, ramp[:, None], 0.0)])
            weights = np.linalg.pinv(templates.reshape(5, -1).T).reshape(5, size, size)
            a = (weights * d).sum(axis=(1, 2))
            u_j, u_f = weights[0], weights[1]
            photons = np.clip(a[0] * m, 0.0, None) / exptime

            def cov(u, w, photons=photons, sky_variance=variance[i]):
                return sky_variance * (u * signal.fftconvolve(w, correlation, mode="same")).sum() + (u * w * photons).sum()

            r = (m * f).sum() / (f * f).sum()
            c_f = a[0] * r
            var_f = cov(u_f, u_f)
            num[i] += (a[1] * c_f - r * cov(u_f, u_j)) / var_f
            den[i] += (c_f**2 - r**2 * cov(u_j, u_j)) / var_f
    return num, den


def test_the_noise_terms_are_those_of_the_estimators_pixel_weights() -> None:
    """The covariances that :func:`leak_sums` takes out, computed in Fourier space from the templates'
    spectra, equal the estimators' pixel weights convolved with the noise correlation, with a
    correlation as long as the stamp is wide (what the padding must not wrap), holes in the stamps
    and the target's photon noise."""
    rng = np.random.default_rng(5)
    catalog = _catalog([(30.0, 30.0)] * 3)
    catalog["r50"] = [0.4, 0.7, 1.0]
    models = _models(catalog)
    data = (200.0 * models + SKY + rng.normal(0.0, 0.5, models.shape)).astype(np.float32)
    usable = np.ones(data.shape, dtype=bool)
    usable[1, 5:12, 40:52] = False
    data[2, 50, 50] = np.nan
    lag = SIZE - 1
    y, x = np.mgrid[-lag : lag + 1, -lag : lag + 1]
    correlation = np.exp(-np.hypot(x, y) / 3.0) + 0.01 * np.cos(x / 5.0) * np.cos(y / 7.0)
    offsets = ((3, 0), (-2, 4), (0, -8))
    sky, variance = np.full(3, SKY), np.array([0.25, 0.3, 0.2])
    fast = leak_sums(data, usable, models, sky, variance, offsets=offsets, correlation=correlation, exptime=90.0)
    slow = _direct_leak_sums(data.astype(np.float64), usable, models.astype(np.float64), sky, variance, correlation,
                             90.0, offsets)
    np.testing.assert_allclose(fast, slow, rtol=1e-8)
