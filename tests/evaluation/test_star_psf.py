"""The effective PSF built from a frame's own stars: GalSim stars of a profile that is not the
measurement's Moffat as the reference, undersampled, among galaxies and noise."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.evaluation.injection import InjectionConfig, run_injection
from lumos_ops.evaluation.star_psf import star_psf
from lumos_ops.exceptions import LumosValueError

from starframes import star_frame

galsim = pytest.importorskip("galsim")
pytest.importorskip("photutils")


def _truth():
    """An undersampled PSF that no Moffat is: Kolmogorov core with a Gaussian jitter, FWHM about 1.4 px."""
    return galsim.Convolve([galsim.Kolmogorov(fwhm=1.2), galsim.Gaussian(sigma=0.35)])


def test_the_stars_effective_psf_is_the_frames_psf():
    truth = _truth()
    psf = star_psf(star_frame(truth, n_stars=60, seed=4), label="frame.fits")
    assert psf.n_stars >= 40 and 1.0 < psf.fwhm_px < 1.8 and psf.image.sum() == pytest.approx(1.0)
    grid = psf.image.shape[0]
    drawn = galsim.Convolve([truth, galsim.Pixel(1.0)]).drawImage(nx=grid, ny=grid, scale=1.0 / psf.oversampling,
                                                                   method="no_pixel").array
    yy, xx = (np.indices(drawn.shape) - (grid - 1) / 2.0) / psf.oversampling
    for radius in (0.75, 1.0, 1.5, 2.5):
        assert psf.encircled(radius) == pytest.approx(drawn[np.hypot(xx, yy) <= radius].sum(), abs=0.015), radius
    # a galaxy drawn with it is the galaxy drawn with the true PSF, pixel for pixel
    galaxy = galsim.Sersic(n=1.0, half_light_radius=1.5)
    with_stars = galsim.Convolve([galaxy, psf.galsim()]).drawImage(nx=31, ny=31, scale=1.0, method="no_pixel").array
    with_truth = galsim.Convolve([galaxy, truth]).drawImage(nx=31, ny=31, scale=1.0).array
    assert np.abs(with_stars - with_truth).max() < 0.02 * with_truth.max()
    assert (with_truth * with_stars).sum() / (with_truth * with_truth).sum() == pytest.approx(1.0, abs=0.015)


def test_too_few_stars_is_a_one_line_error_naming_the_frame():
    data = star_frame(_truth(), n_stars=4, n_galaxies=5, seed=6)
    with pytest.raises(LumosValueError, match=r"^exp7\.fits: \d stars on its stellar locus, fewer than the 10 an "
                                              r"empirical PSF needs; inject with psf_profile 'kolmogorov' or 'moffat'"):
        star_psf(data, label="exp7.fits")


def test_an_injection_with_the_stars_psf_is_read_as_the_frames_stars_are(tmp_path):
    """Stars of the measurement's own profile (Moffat β 3.5): galaxies injected with the stars'
    ePSF read their true flux through the catalogue model, within 1 %, where Kolmogorov ones of
    that FWHM read high."""
    from astropy.io import fits

    data = star_frame(galsim.Moffat(beta=3.5, fwhm=3.0), n_stars=40, n_galaxies=0, shape=(400, 400), seed=8)
    path = tmp_path / "stars.fits"
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path)
    tables = {p: run_injection([path], InjectionConfig(n_galaxies=8, n_place=1, snr_range=(80.0, 120.0), seed=3,
                                                       psf_profile=p, psf_from_stars=True), methods=("aperture",))
              for p in ("stars", "kolmogorov")}
    stars = tables["stars"]
    assert (stars["psf_profile"] == "stars").all() and (stars["psf_drawn"] == "stars").all()
    assert np.allclose(stars["model_flux"], stars["true_flux"], rtol=0.01)
    kolmogorov = tables["kolmogorov"]
    assert (kolmogorov["model_flux"] / kolmogorov["true_flux"]).median() > 1.01


def test_a_frame_without_enough_stars_gets_the_default_kolmogorov(tmp_path, caplog):
    """In a ``stars`` injection, a frame with too few stars for an ePSF draws its galaxies with the
    default's Kolmogorov, says so in a warning and in each row's ``psf_drawn``; the others keep theirs."""
    import logging

    from astropy.io import fits

    rich = star_frame(galsim.Moffat(beta=3.5, fwhm=3.0), n_stars=40, n_galaxies=0, shape=(400, 400), seed=8)
    poor = star_frame(galsim.Moffat(beta=3.5, fwhm=3.0), n_stars=4, n_galaxies=0, shape=(400, 400), seed=9)
    paths = [tmp_path / "rich.fits", tmp_path / "poor.fits"]
    for path, data in zip(paths, (rich, poor)):
        fits.PrimaryHDU(data.astype(np.float32)).writeto(path)
    config = InjectionConfig(n_galaxies=8, n_place=2, snr_range=(80.0, 120.0), seed=3, psf_profile="stars")
    with caplog.at_level(logging.WARNING, logger="lumos_ops.evaluation.injection"):
        table = run_injection(paths, config, methods=("aperture",), psf_fwhm_px={str(p): 3.0 for p in paths})
    drawn = table.groupby(table["frame"].str.rsplit("/", n=1).str[-1])["psf_drawn"].unique()
    assert list(drawn["rich.fits"]) == ["stars"] and list(drawn["poor.fits"]) == ["kolmogorov"]
    assert (table["psf_profile"] == "stars").all()
    assert "poor.fits: " in caplog.text and "get a Kolmogorov PSF of its FWHM instead" in caplog.text


def test_each_stars_own_sky_is_taken_out():
    """A sky a frame-wide estimate leaves low around the stars (a depression of one noise sigma out to
    10 px around each bright source, as a sky fitted with the stars in its boxes leaves): each star's
    sky, measured in a ring beyond the kept radius, is subtracted, and the stack keeps no negative wings."""
    from scipy import ndimage

    truth = galsim.Moffat(beta=2.5, fwhm=1.3)
    data = star_frame(truth, n_stars=60, n_galaxies=0, seed=5)
    bright = data > 100.0 + 50 * 10.0
    data = data - 10.0 * (ndimage.binary_dilation(bright, iterations=10) & ~bright)
    psf = star_psf(data)
    grid = psf.image.shape[0]
    drawn = galsim.Convolve([truth, galsim.Pixel(1.0)]).drawImage(nx=grid, ny=grid, scale=1.0 / psf.oversampling,
                                                                   method="no_pixel").array
    yy, xx = (np.indices(drawn.shape) - (grid - 1) / 2.0) / psf.oversampling
    kept = drawn[np.hypot(xx, yy) <= 6.5].sum()
    for radius in (1.0, 2.0, 4.0):
        assert psf.encircled(radius) == pytest.approx(drawn[np.hypot(xx, yy) <= radius].sum() / kept, abs=0.015)
    assert psf.image[np.hypot(xx, yy) > 3.0].sum() > 0
