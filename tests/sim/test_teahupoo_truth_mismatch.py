"""Truth-model mismatch of TEAHUPOO stamps: the simulated galaxy differs from its model channel in PSF
profile and width, size and knots, seeded and recorded, and off by default (output unchanged)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.render import render_galaxies
from lumos_ops.sim import SurveyManifest, TeahupooConfig, generate_training_set
from lumos_ops.sim.teahupoo import META_COLUMNS
from lumos_ops.sim.teahupoo_config import MISMATCH_FIELDS
from lumos_ops.sim.truth_mismatch import MISMATCH_META_COLUMNS, draw_mismatch, render_truth

SHAPE = {"r50": np.array([0.4, 0.8, 1.2]), "sersic_n": np.array([1.0, 2.5, 4.0]), "q": np.array([0.9, 0.5, 0.3]),
         "pa": np.array([10.0, 60.0, 130.0]), "dx": np.array([0.1, -0.3, 0.2]), "dy": np.array([-0.2, 0.4, 0.0])}
FWHM = np.array([0.8, 0.9, 1.0])


def _truth(config: TeahupooConfig, size: int = 80) -> tuple[np.ndarray, np.ndarray]:
    draws = draw_mismatch(config, 3)
    truth = render_truth(draws, np.arange(3), **SHAPE, model_fwhm=FWHM, model_beta=3.5, size=size,
                         pixel_scale=0.263, device=None)
    model = np.asarray(render_galaxies(**SHAPE, psf_fwhm=FWHM, psf_beta=3.5, size=size, pixel_scale=0.263).images)
    return truth, model


def test_config_is_off_by_default_validated_and_recorded_only_when_on():
    off = TeahupooConfig(n_stamps=1)
    assert not off.truth_mismatch and not set(MISMATCH_FIELDS) & set(off.to_dict())
    on = TeahupooConfig(n_stamps=1, truth_psf_beta_range=(2.0, 6.0), knot_fraction=0.3)
    assert on.truth_mismatch and on.to_dict()["truth_psf_beta_range"] == [2.0, 6.0]
    assert TeahupooConfig(n_stamps=1, psf_scale_range=(0.6, 1.6)).truth_mismatch
    for bad, match in (({"psf_scale_range": (0.0, 1.0)}, "psf_scale_range"),
                       ({"truth_psf_beta_range": (1.0, 4.0)}, "truth_psf_beta_range"),
                       ({"truth_r50_scatter": -0.1}, "truth_r50_scatter"),
                       ({"truth_psf_fwhm_scatter": 2.0}, "truth_psf_fwhm_scatter"),
                       ({"knot_fraction": 1.2}, "knot_fraction"),
                       ({"knot_flux_range": (0.2, 1.0)}, "knot_flux_range"),
                       ({"max_knots": 0}, "max_knots")):
        with pytest.raises(LumosValueError, match=match):
            TeahupooConfig(n_stamps=1, **bad)


def test_without_perturbations_the_truth_is_the_model():
    truth, model = _truth(TeahupooConfig(n_stamps=1, psf_scale_range=(1.0, 1.0)))
    assert np.array_equal(truth, model)


def test_a_wider_winged_truth_psf_keeps_the_flux_and_moves_light_outwards():
    truth, model = _truth(TeahupooConfig(n_stamps=1, truth_psf_beta_range=(1.8, 1.8)), size=160)
    assert truth.sum(axis=(1, 2)) == pytest.approx(model.sum(axis=(1, 2)), abs=0.02)
    c = 80
    core = (slice(c - 3, c + 4),) * 2
    assert (truth[(slice(None), *core)].sum(axis=(1, 2)) < model[(slice(None), *core)].sum(axis=(1, 2))).all()


def test_knots_carry_their_share_of_the_flux_off_the_profile():
    config = TeahupooConfig(n_stamps=1, knot_fraction=1.0, knot_flux_range=(0.3, 0.3), max_knots=4)
    draws = draw_mismatch(config, 3)
    assert np.allclose(draws.knot_frac, 0.3) and np.allclose(draws.knot_share.sum(axis=1), 1.0)
    assert ((draws.n_knots >= 1) & (draws.n_knots <= 4)).all()
    truth, model = _truth(config, size=120)
    assert truth.sum(axis=(1, 2)) == pytest.approx(model.sum(axis=(1, 2)), abs=0.01)
    assert np.abs(truth - model).sum(axis=(1, 2)).min() > 0.05


def test_truth_scatter_draws_are_seeded_and_log_normal():
    config = TeahupooConfig(n_stamps=1, seed=3, truth_r50_scatter=0.2, truth_psf_fwhm_scatter=0.05)
    a, b = draw_mismatch(config, 20000), draw_mismatch(config, 20000)
    assert np.array_equal(a.r50_factor, b.r50_factor)
    assert np.std(np.log(a.r50_factor)) == pytest.approx(0.2, rel=0.03)
    assert np.std(np.log(a.fwhm_factor)) == pytest.approx(0.05, rel=0.03)
    assert np.isnan(a.beta).all() and (a.knot_frac == 0).all() and (a.psf_scale == 1.0).all()


def test_a_mismatch_fraction_leaves_the_other_stamps_exactly_their_model():
    """``mismatch_fraction`` 0.3: about 70 % of the stamps keep the model's PSF, size and no knots, and
    the mismatched ones have the draws a fraction of 1 gives them; recorded only below 1."""
    full = TeahupooConfig(n_stamps=1, seed=4, truth_r50_scatter=0.1, truth_psf_fwhm_scatter=0.05,
                          truth_psf_beta_range=(2.0, 6.0), knot_fraction=0.5, psf_scale_range=(0.6, 1.6))
    part = TeahupooConfig(**{**full.to_dict(), "flux_source": full.flux_source, "mismatch_fraction": 0.3})
    a, b = draw_mismatch(full, 20000), draw_mismatch(part, 20000)
    exact = np.isnan(b.beta)
    assert exact.mean() == pytest.approx(0.7, abs=0.015)
    assert (b.fwhm_factor[exact] == 1.0).all() and (b.r50_factor[exact] == 1.0).all()
    assert (b.knot_frac[exact] == 0.0).all() and (b.knot_share[exact] == 0.0).all()
    assert np.array_equal(a.beta[~exact], b.beta[~exact]) and np.array_equal(a.knot_frac[~exact], b.knot_frac[~exact])
    assert np.array_equal(a.psf_scale, b.psf_scale)
    truth = render_truth(b, np.flatnonzero(exact)[:3], **SHAPE, model_fwhm=FWHM, model_beta=3.5, size=80,
                         pixel_scale=0.263, device=None)
    model = np.asarray(render_galaxies(**SHAPE, psf_fwhm=FWHM, psf_beta=3.5, size=80, pixel_scale=0.263).images)
    np.testing.assert_allclose(truth, model, atol=1e-12)
    assert part.to_dict()["mismatch_fraction"] == 0.3 and "mismatch_fraction" not in full.to_dict()
    with pytest.raises(LumosValueError, match="mismatch_fraction"):
        TeahupooConfig(n_stamps=1, knot_fraction=0.3, mismatch_fraction=1.5)


def _set(tmp_path, survey: SurveyManifest, name: str, **kw):
    catalog = pd.read_parquet(survey.catalog_path)
    out = tmp_path / name
    generate_training_set(TeahupooConfig(n_stamps=80, shard_size=64, seed=5, stamp_size=40, **kw),
                          survey.exposure_paths, catalog, out)
    stamps = np.concatenate([np.load(p) for p in sorted((out / "shards").glob("*.npy"))])
    return out, pd.read_parquet(out / "meta.parquet"), stamps


def test_generator_records_the_mismatch_keeps_the_models_and_is_seeded(tmp_path, small_survey: SurveyManifest):
    options = {"truth_psf_beta_range": (2.0, 6.0), "truth_r50_scatter": 0.15, "knot_fraction": 0.5,
               "psf_scale_range": (0.6, 1.6)}
    off_dir, off_meta, off = _set(tmp_path, small_survey, "off")
    on_dir, on_meta, on = _set(tmp_path, small_survey, "on", **options)
    _, again_meta, again = _set(tmp_path, small_survey, "again", **options)
    assert tuple(off_meta.columns) == META_COLUMNS
    assert "knot_fraction" not in json.loads((off_dir / "manifest.json").read_text())["config"]
    assert json.loads((on_dir / "manifest.json").read_text())["config"]["knot_fraction"] == 0.5
    assert tuple(on_meta.columns) == META_COLUMNS + MISMATCH_META_COLUMNS
    assert np.array_equal(on, again, equal_nan=True) and on_meta.equals(again_meta)

    scale = on_meta.psf_fwhm / off_meta.psf_fwhm
    assert scale.between(0.6, 1.6).all() and scale.std() > 0.1
    assert on_meta.truth_psf_beta.between(2.0, 6.0).all()
    assert np.allclose(on_meta.truth_psf_fwhm, on_meta.psf_fwhm)
    assert ((on_meta.knot_flux_frac > 0) == (on_meta.n_knots > 0)).all() and 0.2 < (on_meta.n_knots > 0).mean() < 0.8
    same = ["stamp_id", "band", "ccd_x", "ccd_y", "i_auto", "r50", "sersic_n", "q", "pa", "dx", "dy", "flux"]
    assert on_meta[same].equals(off_meta[same])  # the other random streams are untouched
    # The model channel is the catalogued Sersic profile at the (scaled) PSF: unit flux, the galaxy's shape.
    models = on[:, 1].astype(np.float64)
    reference = render_galaxies(r50=on_meta.r50.to_numpy(), sersic_n=on_meta.sersic_n.to_numpy(), q=on_meta.q.to_numpy(),
                                pa=on_meta.pa.to_numpy(), psf_fwhm=on_meta.psf_fwhm.to_numpy(),
                                psf_beta=on_meta.psf_beta.to_numpy(), dx=on_meta.dx.to_numpy(), dy=on_meta.dy.to_numpy(),
                                size=40, pixel_scale=0.263).images
    assert np.allclose(models, reference, atol=1e-6)


def test_part_of_the_sky_is_removed_from_each_background_and_recorded(tmp_path, small_survey: SurveyManifest):
    assert "sky_removed_range" not in TeahupooConfig(n_stamps=1).to_dict()
    with pytest.raises(LumosValueError, match="sky_removed_range"):
        TeahupooConfig(n_stamps=1, sky_removed_range=(0.5, 1.5))
    _, off_meta, off = _set(tmp_path, small_survey, "off")
    on_dir, on_meta, on = _set(tmp_path, small_survey, "sky", sky_removed_range=(0.0, 1.0))
    assert json.loads((on_dir / "manifest.json").read_text())["config"]["sky_removed_range"] == [0.0, 1.0]
    assert tuple(on_meta.columns) == META_COLUMNS + ("sky_removed",)
    assert on_meta[list(META_COLUMNS)].equals(off_meta) and np.array_equal(on[:, 1], off[:, 1])
    shift = (off[:, 0].astype(np.float64) - on[:, 0].astype(np.float64))
    removed = on_meta["sky_removed"].to_numpy()
    assert np.allclose(np.nanmedian(shift.reshape(len(shift), -1), axis=1), removed, atol=1e-3 * (1 + removed))
    sky = np.nanmedian(off[:, 0].reshape(len(off), -1), axis=1)
    assert (removed >= -1e-9).all() and (removed <= 1.001 * np.abs(sky) + 0.5).all() and removed.std() > 0
