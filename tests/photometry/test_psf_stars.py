"""The PSF FWHM read from a frame's own stars: GalSim stars as the reference, galaxies and cosmic rays around them."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry.psf_stars import MIN_STARS, fit_star, measure_psf_fwhm

from starframes import star_frame as _frame

galsim = pytest.importorskip("galsim")


@pytest.mark.parametrize("fwhm", [1.2, 3.2])
def test_the_fwhm_of_moffat_stars_is_read_among_galaxies(fwhm):
    """Stars of the measurement's profile (Moffat beta 3.5, GalSim's) give their FWHM within 1 %,
    undersampled or not, with as many galaxies in the frame (they are wider: off the locus)."""
    data = _frame(galsim.Moffat(beta=3.5, fwhm=fwhm))
    psf = measure_psf_fwhm(data)
    assert psf.fwhm_px == pytest.approx(fwhm, rel=0.01)
    assert psf.n_stars >= 20 and psf.beta == 3.5 and psf.spread < 0.02


@pytest.mark.parametrize("beta", [2.5, 4.5])
def test_the_moffat_beta_is_read_when_asked(beta):
    """``beta=None`` fits it star by star: the locus median within 0.05, the FWHM within 1 %."""
    psf = measure_psf_fwhm(_frame(galsim.Moffat(beta=beta, fwhm=2.5), seed=3), beta=None)
    assert psf.beta == pytest.approx(beta, abs=0.05) and psf.fwhm_px == pytest.approx(2.5, rel=0.01)


def test_cosmic_rays_and_a_sky_gradient_do_not_move_it():
    data = _frame(galsim.Moffat(beta=3.5, fwhm=3.2), seed=1)
    reference = measure_psf_fwhm(data).fwhm_px
    rng = np.random.default_rng(5)
    hit = data + 3.0 * np.arange(data.shape[1])[None, :]  # a gradient of 100 sigma across the frame
    ys, xs = rng.integers(10, 350, 40), rng.integers(10, 350, 40)
    hit[ys, xs] += rng.uniform(2e3, 2e4, 40)  # single-pixel cosmic rays, brighter than most star peaks
    assert measure_psf_fwhm(hit).fwhm_px == pytest.approx(reference, rel=0.01)


def test_one_star_fit_returns_its_flux_too():
    star = galsim.Moffat(beta=3.5, fwhm=2.5).withFlux(5e4).drawImage(nx=15, ny=15, scale=1.0, offset=(0.3, -0.2)).array
    fwhm, flux, x0, y0, beta = fit_star(star)
    assert fwhm == pytest.approx(2.5, rel=0.005) and flux == pytest.approx(5e4, rel=0.005)
    assert (x0, y0) == (pytest.approx(0.3, abs=0.01), pytest.approx(-0.2, abs=0.01)) and beta == 3.5
    assert fit_star(np.zeros((15, 15))) is None


@pytest.mark.parametrize("beta", [3.5, None])
def test_a_star_fit_does_not_depend_on_the_frame_units(beta):
    """The same star in e-/s, in ADU of a 1000 times shorter exposure or in nanomaggies: the same
    FWHM and beta, the flux in the cutout's unit (the fit started at the absolute sum before)."""
    rng = np.random.default_rng(4)
    star = galsim.Moffat(beta=2.4, fwhm=0.8).withFlux(1.0).drawImage(nx=11, ny=11, scale=1.0, offset=(0.2, 0.1)).array
    star = star + rng.normal(0.0, 2e-3, star.shape)
    fits = [fit_star(star * k, beta=beta) for k in (1e-3, 1.0, 1e3, 1e5)]
    assert all(f is not None for f in fits)
    for fit, k in zip(fits, (1e-3, 1.0, 1e3, 1e5)):
        assert fit.fwhm_px == pytest.approx(fits[1].fwhm_px, rel=1e-6) and fit.beta == pytest.approx(fits[1].beta, rel=1e-6)
        assert fit.flux == pytest.approx(fits[1].flux * k, rel=1e-6)


def test_a_frame_without_enough_stars_is_refused_by_name():
    data = _frame(galsim.Moffat(beta=3.5, fwhm=3.0), n_stars=MIN_STARS - 2, n_galaxies=0, seed=2)
    with pytest.raises(LumosValueError, match=r"^exp\.fits: only 3 isolated unsaturated stars .* need 5; give the FWHM"):
        measure_psf_fwhm(data, label="exp.fits")


@pytest.mark.parametrize("n_sub", [3, 9])
def test_the_fixed_beta_fit_uses_the_moffat_pixels_exact_gradient(n_sub):
    """The analytic derivatives of the pixel-integrated Moffat (centre and FWHM) that the fixed-beta
    fit is given agree with central differences of the model to 1e-8 of their scale."""
    from lumos_ops.photometry.psf_stars import _moffat_pixels, _moffat_pixels_and_gradient

    args = (15, 0.31, -0.22, 1.4, 3.5)
    model, gradient = _moffat_pixels_and_gradient(*args, n_sub)
    np.testing.assert_allclose(model, _moffat_pixels(*args, n_sub), rtol=0, atol=1e-15)
    step = 1e-6
    for i in range(3):
        up, down = list(args), list(args)
        up[1 + i] += step
        down[1 + i] -= step
        numeric = (_moffat_pixels(*up, n_sub) - _moffat_pixels(*down, n_sub)) / (2 * step)
        assert np.abs(numeric - gradient[i]).max() < 1e-8 * np.abs(gradient[i]).max()
