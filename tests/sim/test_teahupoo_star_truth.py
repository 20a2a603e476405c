"""TEAHUPOO galaxies drawn with each exposure's own PSF built from its stars (``truth_psf="stars"``):
the drawing's conventions are the renderer's, the galaxies carry the stars' PSF while the model
channel keeps the measurement's Moffat, and the option is validated, recorded and off by default."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from lumos_ops.cutouts import cut_stamps
from lumos_ops.evaluation.star_psf import StarPsfImage
from lumos_ops.exceptions import LumosValueError
from lumos_ops.io.exposure import read_exposure
from lumos_ops.render import render_galaxies
from lumos_ops.sim import TeahupooConfig, TrainingSet, generate_training_set
from lumos_ops.sim.star_truth import draw_with_star_psf

from starframes import star_frame

galsim = pytest.importorskip("galsim")
pytest.importorskip("photutils")

SHAPE = {"r50": np.array([0.5, 1.0, 0.3]), "sersic_n": np.array([1.0, 2.5, 4.0]), "q": np.array([0.5, 0.8, 0.3]),
         "pa": np.array([30.0, 100.0, 160.0]), "dx": np.array([0.3, -0.4, 0.1]), "dy": np.array([-0.2, 0.45, 0.0])}


def test_a_moffat_epsf_draws_what_the_renderer_draws_with_that_moffat():
    """An ePSF that is a Moffat convolved with the pixel (as stars show it) draws, through GalSim, the
    stamps :func:`render_galaxies` draws with that Moffat: same centre, position angle, size, flux."""
    fwhm, beta, oversampling = 2.0, 3.0, 4
    effective = galsim.Convolve(galsim.Moffat(beta=beta, fwhm=fwhm), galsim.Pixel(1.0))
    image = effective.drawImage(nx=81, ny=81, scale=1.0 / oversampling, method="no_pixel").array
    psf = StarPsfImage(image=image / image.sum(), oversampling=oversampling, fwhm_px=fwhm, n_stars=50)
    drawn = draw_with_star_psf(psf, **SHAPE, size=40, pixel_scale=0.263)
    rendered = np.asarray(render_galaxies(**SHAPE, psf_fwhm=fwhm * 0.263, psf_beta=beta, size=40,
                                          pixel_scale=0.263).images)
    for a, b in zip(drawn, rendered):
        assert np.abs(a - b).max() < 2e-3 * b.max()
        assert a.sum() == pytest.approx(b.sum(), abs=1e-3)


def test_the_option_is_validated_and_recorded_only_when_on():
    assert "truth_psf" not in TeahupooConfig(n_stamps=1).to_dict()
    assert TeahupooConfig(n_stamps=1, truth_psf="stars").to_dict()["truth_psf"] == "stars"
    with pytest.raises(LumosValueError, match=r"truth_psf must be one of \('model', 'stars'\), got 'piff'"):
        TeahupooConfig(n_stamps=1, truth_psf="piff")
    with pytest.raises(LumosValueError, match="choose one"):
        TeahupooConfig(n_stamps=1, truth_psf="stars", knot_fraction=0.2)


def _star_exposure(small_survey, tmp_path, *, n_stars: int, seed: int) -> tuple[str, float]:
    """One of the small survey's exposures with its pixels replaced by Kolmogorov stars of 3 px FWHM
    on a sky (its header's Moffat model, β 3.5 at that FWHM, kept): (path, pixel scale arcsec)."""
    from astropy.io import fits

    source = small_survey.exposure_paths[0]
    with fits.open(source) as hdul:
        header = hdul[0].header.copy()
    pixel_scale = 0.263
    header["PSFFWHM"] = 3.0 * pixel_scale
    header["PSFBETA"] = 3.5
    data = star_frame(galsim.Kolmogorov(fwhm=3.0), n_stars=n_stars, n_galaxies=0, shape=(360, 360), seed=seed)
    path = tmp_path / f"stars{seed}.fits"
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
    return str(path), pixel_scale


def _residuals(out, exposure_path: str, size: int, truth: np.ndarray) -> np.ndarray:
    """Per stamp: sum of squares of (cutout - its background cut - flux x truth), over the galaxy's flux^2."""
    ts = TrainingSet(out)
    meta = ts.meta
    cutouts = ts.images(np.arange(len(ts)))[:, 0].astype(np.float64)
    exposure = read_exposure(exposure_path)
    background = cut_stamps(exposure.data, meta.ccd_x.to_numpy(), meta.ccd_y.to_numpy(), size=size).data
    galaxy = cutouts - background
    flux = meta.flux.to_numpy()[:, None, None]
    return ((galaxy - flux * truth) ** 2).sum(axis=(1, 2)) / flux[:, 0, 0] ** 2


def test_stars_training_galaxies_carry_the_stars_psf_and_keep_the_moffat_model(small_survey, tmp_path):
    """Same seed, both options: the model channels are identical (the header's Moffat); the
    ``stars`` set's galaxies are the frame's Kolmogorov-PSF galaxies (small residual against them,
    large against the Moffat model), the ``model`` set's the reverse."""
    path, pixel_scale = _star_exposure(small_survey, tmp_path, n_stars=40, seed=4)
    catalog = pd.read_parquet(small_survey.catalog_path)
    size = 40
    sets = {}
    for option in ("model", "stars"):
        config = TeahupooConfig(n_stamps=24, seed=2, stamp_size=size, pixel_scale=pixel_scale, truth_psf=option,
                                flux_range=(4e3, 6e3))
        out = tmp_path / option
        generate_training_set(config, [path], catalog, out)
        sets[option] = out
    model_set, stars_set = TrainingSet(sets["model"]), TrainingSet(sets["stars"])
    models = model_set.images(np.arange(24))[:, 1].astype(np.float64)
    assert np.array_equal(models, stars_set.images(np.arange(24))[:, 1])
    meta = stars_set.meta
    assert meta["star_psf"].all() and "star_psf" not in model_set.meta
    assert json.loads((sets["stars"] / "manifest.json").read_text())["config"]["truth_psf"] == "stars"
    # the true galaxies are Kolmogorov-PSF galaxies integrated over the pixel
    truth = np.stack([
        galsim.Convolve(galsim.Sersic(n=min(n, 6.2), half_light_radius=r / pixel_scale).shear(q=q, beta=pa * galsim.degrees),
                        galsim.Kolmogorov(fwhm=3.0)).drawImage(nx=size, ny=size, scale=1.0,
                                                               offset=(size // 2 + dx - (size - 1) / 2,
                                                                       size // 2 + dy - (size - 1) / 2)).array
        for r, n, q, pa, dx, dy in zip(meta.r50, meta.sersic_n, meta.q, meta.pa, meta.dx, meta.dy)
    ])
    stars_vs_truth = _residuals(sets["stars"], path, size, truth)
    stars_vs_model = _residuals(sets["stars"], path, size, models)
    model_vs_truth = _residuals(sets["model"], path, size, truth)
    model_vs_model = _residuals(sets["model"], path, size, models)
    assert np.median(stars_vs_truth) < 0.5 * np.median(stars_vs_model)
    assert np.median(model_vs_model) < 0.5 * np.median(model_vs_truth)


def test_an_exposure_without_enough_stars_keeps_the_model_psf(small_survey, tmp_path, caplog):
    path, pixel_scale = _star_exposure(small_survey, tmp_path, n_stars=4, seed=5)
    catalog = pd.read_parquet(small_survey.catalog_path)
    config = TeahupooConfig(n_stamps=6, seed=2, stamp_size=40, pixel_scale=pixel_scale, truth_psf="stars")
    with caplog.at_level(logging.WARNING, logger="lumos_ops.sim.star_truth"):
        generate_training_set(config, [path], catalog, tmp_path / "out")
    ts = TrainingSet(tmp_path / "out")
    assert not ts.meta["star_psf"].any()
    assert "stars5.fits: " in caplog.text and "drawn with the model's PSF" in caplog.text
