"""``lumos adapt``'s pixel-noise stage: the survey's blank-sky noise sets the candidate's normalisation and prior."""

import dataclasses
import json

import numpy as np
import pytest
from astropy.io import fits

from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.flux_prior import REFERENCE_PRIOR, ReferencePrior
from lumos_ops.lumos import adapt as adapt_module
from lumos_ops.lumos.adapt import NoiseScale, adapt, exposure_pixel_noise, measure_noise_scale
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.config import Normalization

GAIN, EXPTIME = 1.0, 90.0


def write_frame(path, *, noise_adu, band="NB615", expnum=1, seed=0, shape=(120, 140), stars=True):
    """Sky 600 ADU with white noise ``noise_adu`` and, by default, four bright stars (header contract)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(600.0, noise_adu, shape)
    if stars:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        for x, y in rng.uniform(15, min(shape) - 15, (4, 2)):
            data += 400 * noise_adu * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5**2)
    header = fits.Header({"FILTER": band, "EXPTIME": EXPTIME, "GAIN": GAIN, "PSFFWHM": 0.9, "EXPNUM": expnum,
                          "CCDNUM": 1})
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
    return str(path)


def test_pixel_noise_is_the_blank_sky_noise_in_e_per_s_with_stars_masked(tmp_path):
    with_stars = write_frame(tmp_path / "a.fits", noise_adu=30.0)
    assert exposure_pixel_noise(with_stars) == pytest.approx(30.0 * GAIN / EXPTIME, rel=0.03)
    blank = fits.open(with_stars)[0].data.copy()
    blank[:] = 600.0
    fits.PrimaryHDU(blank, header=fits.getheader(with_stars)).writeto(tmp_path / "flat.fits")
    with pytest.raises(InputFileError, match="flat.fits"):
        exposure_pixel_noise(tmp_path / "flat.fits")


def test_five_times_the_noise_gives_five_times_the_scale(tmp_path):
    quiet = [write_frame(tmp_path / f"q{k}.fits", noise_adu=20.0, expnum=k, seed=k) for k in range(3)]
    noisy = [write_frame(tmp_path / f"n{k}.fits", noise_adu=100.0, expnum=10 + k, seed=k) for k in range(3)]
    base_noise = 0.275
    a = measure_noise_scale(quiet, base_noise)
    b = measure_noise_scale(noisy, base_noise)
    assert a.survey_noise == pytest.approx(20.0 / EXPTIME, rel=0.03)
    assert b.factor / a.factor == pytest.approx(5.0, rel=0.02)
    assert a.factor == pytest.approx(a.survey_noise / base_noise) and set(a.exposures) == set(quiet)
    assert a.by_band == {"NB615": pytest.approx(a.survey_noise)}
    assert measure_noise_scale(noisy, base_noise, rescale=False).factor == 1.0

    norm = Normalization(pixel_scale=0.275, model_scale=68.0, flux_scale=118.0, imag_mean=20.2, imag_std=1.6,
                         background_mean=7.2, background_std=3.5)
    na, nb = a.normalization(norm), b.normalization(norm)
    for name in ("pixel_scale", "background_mean", "background_std", "flux_scale"):
        assert getattr(nb, name) / getattr(na, name) == pytest.approx(5.0, rel=0.02)
        assert getattr(na, name) == pytest.approx(getattr(norm, name) * a.factor)
    for name in ("pixel_soft", "model_scale", "imag_mean", "imag_std", "ccd_shape"):
        assert getattr(na, name) == getattr(norm, name)


def test_scaled_prior_spans_the_same_range_in_units_of_the_scale():
    prior = REFERENCE_PRIOR.scaled(6.5)
    assert (prior.low, prior.high, prior.asinh_scale) == pytest.approx((-260.0, 7800.0, 32.5))
    assert prior.flat_fraction == REFERENCE_PRIOR.flat_fraction
    f = np.array([-30.0, 0.0, 3.0, 100.0, 1100.0])
    # same shape: the density of f' = 6.5 f is the density of f divided by 6.5
    assert np.allclose(prior.sampling_density(6.5 * f) * 6.5, REFERENCE_PRIOR.sampling_density(f))
    assert ReferencePrior.from_dict(prior.to_dict()) == prior
    with pytest.raises(ValueError, match="factor"):
        REFERENCE_PRIOR.scaled(0.0)


class Stop(Exception):
    pass


def _train(root, out, monkeypatch, **changes):
    """``lumos adapt`` on ``root`` up to the fine-tuned candidate (the injections stopped), keeping the
    base model's stamp background so that only the rescale changes the normalisation."""
    values = dict(holdout=0.34, n_stamps=96, val_fraction=0.25, epochs=1, batch_size=32, seed=1, device="cpu",
                  progress=False, pair_weight=0.0, stamp_background=None)
    values.update(changes)

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(adapt_module, "_stage_error_floor", stop)
    with pytest.raises(Stop):
        adapt(root, _catalogue(), out, adapt_module.AdaptConfig(**values))
    monkeypatch.undo()
    return load_checkpoint(out / "model.pt", device="cpu")


def _catalogue(n=30):
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"ref_id": np.arange(n), "x": rng.uniform(10, 130, n), "y": rng.uniform(10, 110, n),
                         "r50": rng.uniform(0.2, 0.8, n), "sersic_n": 1.0, "q": 0.8, "pa": 0.0,
                         "i_auto": rng.uniform(19, 23, n)})


@pytest.mark.slow
def test_candidate_checkpoint_carries_the_rescaled_normalisation_and_prior(tmp_path, monkeypatch):
    runs = {}
    for name, noise_adu in (("quiet", 20.0), ("noisy", 100.0)):
        root = tmp_path / name
        root.mkdir()
        for k in range(3):
            write_frame(root / f"r{k}.fits", noise_adu=noise_adu, expnum=k, seed=k)
        runs[name] = (_train(root, tmp_path / f"{name}-out", monkeypatch), tmp_path / f"{name}-out")
    base = load_checkpoint(None, device="cpu")
    quiet, noisy = runs["quiet"][0], runs["noisy"][0]
    for name in ("pixel_scale", "background_mean", "background_std", "flux_scale"):
        assert getattr(noisy.normalization, name) / getattr(quiet.normalization, name) == pytest.approx(5.0, rel=0.03)
    assert noisy.normalization.model_scale == base.normalization.model_scale
    assert noisy.normalization.imag_mean == base.normalization.imag_mean

    for model, out in runs.values():
        recorded = model.metadata["pixel_noise"]
        s = recorded["factor"]
        assert recorded["base_noise"] == pytest.approx(base.normalization.pixel_scale)
        assert s == pytest.approx(recorded["survey_noise"] / recorded["base_noise"])
        assert model.normalization.pixel_scale == pytest.approx(base.normalization.pixel_scale * s)
        # the likelihood conversion and the PRIOR_EDGE flag read the checkpoint's prior: the rescaled one,
        # the prior the training set drew from
        assert model.is_likelihood and model.flux_prior == base.flux_prior.scaled(s)
        manifest = json.loads((out / "teahupoo" / "manifest.json").read_text())
        assert ReferencePrior.from_dict(manifest["config"]["flux_prior"]) == model.flux_prior
        assert json.loads((out / "noise.json").read_text())["factor"] == pytest.approx(s)

    # --no-noise-rescale: the base model's normalisation and prior, the noise still recorded
    kept = _train(tmp_path / "noisy", tmp_path / "kept-out", monkeypatch, rescale="none")
    # (plus the range of the training magnitudes, which every fine-tuning records)
    assert kept.normalization.imag_range is not None
    assert dataclasses.replace(kept.normalization, imag_range=base.normalization.imag_range) == base.normalization
    assert kept.flux_prior == base.flux_prior
    assert kept.metadata["pixel_noise"]["factor"] == 1.0
    assert kept.metadata["pixel_noise"]["survey_noise"] == pytest.approx(noisy.metadata["pixel_noise"]["survey_noise"])
    # --rescale prior: the base model's normalisation, the prior's range times s
    prior_only = _train(tmp_path / "noisy", tmp_path / "prior-out", monkeypatch, rescale="prior")
    s = noisy.metadata["pixel_noise"]["factor"]
    assert dataclasses.replace(prior_only.normalization, imag_range=base.normalization.imag_range) == base.normalization
    assert prior_only.flux_prior == base.flux_prior.scaled(s)
    assert prior_only.metadata["pixel_noise"]["factor"] == pytest.approx(s)
    with pytest.raises(LumosValueError, match="rescale"):
        adapt_module.AdaptConfig(rescale="half")


def test_noise_scale_to_dict_round_trips():
    scale = NoiseScale(base_noise=0.275, survey_noise=0.55, factor=2.0, by_band={"g": 0.55}, exposures={"a": 0.55})
    data = json.loads(json.dumps(scale.to_dict()))
    assert data["unit"] == "e-/s per pixel"
    data.pop("unit")
    assert NoiseScale(**data) == scale
