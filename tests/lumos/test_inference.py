"""Batched inference, output units, edge targets and the "lumos" measure method."""

import dataclasses

import numpy as np
import pytest
import torch

from lumos_ops.constants import band_epoch_index
from lumos_ops.flags import Flag
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
from lumos_ops.lumos.inference import predict_mixtures
from lumos_ops.lumos.method import LumosMethod
from lumos_ops.lumos.model import get_model
from lumos_ops.lumos.preprocess import prepare_inputs
from lumos_ops.measure import prepare_targets

from lumos_helpers import NORM, write_exposure


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    cut = rng.normal(5.0, 0.3, (n, 60, 60)).astype(np.float32)
    cut[:3, :, :10] = np.nan
    models = np.full((n, 60, 60), 1 / 3600, dtype=np.float32)
    imag = rng.uniform(19, 23, n)
    return prepare_inputs(cut, models, imag, rng.uniform(0, 299, n), rng.uniform(0, 199, n), rng.integers(0, 80, n), NORM), imag


def test_all_batches_are_returned(checkpoint):
    loaded = load_checkpoint(checkpoint, device="cpu")
    inputs, imag = _inputs(37)
    small = predict_mixtures(loaded, inputs, imag, batch_size=8)
    large = predict_mixtures(loaded, inputs, imag, batch_size=64)
    assert small.mu.shape == (37, 5)
    np.testing.assert_allclose(small.mu, large.mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(small.alpha.sum(1), 1.0)
    assert np.isfinite(small.mu).all() and (small.sigma > 0).all()
    assert list(small.truncated) == list(imag >= 20.5)


def test_cpu_network_calls_hold_at_most_cpu_batch_rows(checkpoint, monkeypatch):
    """On the CPU a large batch_size is run CPU_BATCH rows at a time, with the outputs of smaller calls."""
    import lumos_ops.lumos.inference as inference

    loaded = load_checkpoint(checkpoint, device="cpu")
    inputs, imag = _inputs(2 * inference.CPU_BATCH + 5)
    sizes = []
    original = inference.inference_callable

    def recording(net, *batch, **options):
        run = original(net, *batch, **options)

        def call(*args):
            sizes.append(args[0].shape[0])
            return run(*args)

        return call

    monkeypatch.setattr(inference, "inference_callable", recording)
    large = predict_mixtures(loaded, inputs, imag, batch_size=1024)
    assert sizes == [inference.CPU_BATCH, inference.CPU_BATCH, 5]
    sizes.clear()
    small = predict_mixtures(loaded, inputs, imag, batch_size=50)
    assert max(sizes) == 50
    for name in ("alpha", "mu", "sigma"):
        np.testing.assert_allclose(getattr(large, name), getattr(small, name), rtol=1e-5, atol=1e-6)


def test_outputs_are_network_units_times_flux_scale(checkpoint):
    loaded = load_checkpoint(checkpoint, device="cpu")
    inputs, imag = _inputs(5)
    got = predict_mixtures(loaded, inputs, imag)
    with torch.inference_mode():
        out = loaded.net(torch.from_numpy(inputs.images), torch.from_numpy(inputs.scalars), torch.from_numpy(inputs.band_epoch))
    eager = predict_mixtures(loaded, inputs, imag, optimize=False)
    np.testing.assert_allclose(eager.mu, out.mu.double().numpy() * NORM.flux_scale, rtol=1e-6)
    np.testing.assert_allclose(eager.sigma, out.sigma.double().numpy() * NORM.flux_scale, rtol=1e-6)
    np.testing.assert_allclose(got.mu, eager.mu, rtol=1e-4, atol=1e-6)  # TorchScript graph: float32 rounding
    np.testing.assert_allclose(got.sigma, eager.sigma, rtol=1e-4, atol=1e-6)


def test_preprocess_pads_nan_with_background_and_counts_it():
    inputs, _ = _inputs(6)
    assert list(inputs.n_padded) == [600, 600, 600, 0, 0, 0]
    assert np.all(inputs.images[:3, 0, :, :10] == 0.0)
    assert np.isfinite(inputs.images).all()
    assert inputs.scalars[:, 1].min() >= -1 and inputs.scalars[:, 1].max() <= 1


@pytest.fixture(scope="module")
def exposure_and_catalog(tmp_path_factory):
    path, catalog = write_exposure(tmp_path_factory.mktemp("exp") / "exp.fits", seed=1)
    catalog.loc[0, ["x", "y"]] = [3.0, 100.0]  # stamp crosses the edge
    catalog.loc[1, ["x", "y"]] = [-500.0, 100.0]  # off the image
    return read_exposure(path), catalog


def test_lumos_method_measures_every_target(checkpoint, exposure_and_catalog):
    exposure, catalog = exposure_and_catalog
    ctx = prepare_targets(exposure, catalog)
    frame = LumosMethod(model=checkpoint, batch_size=4, device="cpu").measure(ctx)
    assert len(frame) == 23
    for column in ["flux", "flux_err", "flag", "median", "mode", "sigma68", "sigma95", "eta"] + [
        f"{p}_{k}" for p in ("alpha", "mu", "sigma") for k in range(5)
    ]:
        assert column in frame.columns
    assert frame.loc[0, "flag"] & Flag.EDGE
    assert np.isfinite(frame.loc[0, "flux"])
    assert frame.loc[1, "flag"] & Flag.OFF_IMAGE and np.isnan(frame.loc[1, "flux"])
    assert np.isfinite(frame.loc[2:, "flux"]).all() and (frame.loc[2:, "flux_err"] > 0).all()
    assert frame["truncated"].tolist() == (catalog["i_auto"] >= 20.5).tolist()


@pytest.mark.parametrize("inputs", [("i_auto", "ccd_x", "ccd_y", "background"), ("i_auto", "background")])
def test_targets_beyond_the_training_ccd_are_flagged(inputs, exposure_and_catalog, tmp_path, caplog):
    """A model trained on 100-row CCDs measures a 200-row exposure and flags the rows it extrapolates."""
    torch.manual_seed(0)
    path = tmp_path / "short-ccd.pt"
    save_checkpoint(path, get_model("fast", inputs=inputs).eval(), arch="fast",
                    normalization=dataclasses.replace(NORM, ccd_shape=(100, 300)), metadata={"truncation_imag": 20.5})
    exposure, catalog = exposure_and_catalog
    frame = LumosMethod(model=path, device="cpu").measure(prepare_targets(exposure, catalog))
    flagged = (frame["flag"].to_numpy() & int(Flag.CCD_EXTRAPOLATED)) != 0
    expected = (catalog["y"] > 99).to_numpy() & (catalog["x"] >= 0).to_numpy() if "ccd_y" in inputs else False
    assert np.array_equal(flagged, np.broadcast_to(expected, flagged.shape))
    assert np.isfinite(frame.loc[flagged, "flux"]).all()
    if "ccd_y" in inputs:
        assert 0 < flagged.sum() < len(frame)
        assert "exp.fits" in caplog.text and "CCD_EXTRAPOLATED" in caplog.text


@pytest.mark.parametrize(("span", "flagged"), [((0.8, 1.2), False), ((1.05, 2.0), False), ((2.0, 3.0), True),
                                              ((0.2, 0.5), True)])
def test_an_exposure_whose_psf_the_model_never_saw_is_flagged(span, flagged, exposure_and_catalog, tmp_path, caplog):
    """The PSF FWHM in pixels against the model's training range (in units of the exposure's own
    FWHM here), with a 10 % margin: every target of an exposure outside it is flagged, with a warning."""
    exposure, catalog = exposure_and_catalog
    fwhm_px = exposure.psf_fwhm / exposure.pixel_scale
    torch.manual_seed(0)
    path = tmp_path / "psf-range.pt"
    save_checkpoint(path, get_model("fast").eval(), arch="fast", normalization=NORM,
                    metadata={"truncation_imag": 20.5, "psf_fwhm_px_range": [span[0] * fwhm_px, span[1] * fwhm_px]})
    frame = LumosMethod(model=path, device="cpu").measure(prepare_targets(exposure, catalog))
    bit = (frame["flag"].to_numpy() & int(Flag.PSF_EXTRAPOLATED)) != 0
    on = (frame["flag"].to_numpy() & int(Flag.OFF_IMAGE)) == 0
    assert np.array_equal(bit, on & flagged)
    assert np.isfinite(frame.loc[on, "flux"]).all()
    assert ("PSF_EXTRAPOLATED" in caplog.text and "exp.fits" in caplog.text) == flagged


def test_the_training_psf_range_of_recipe_and_adapted_models():
    from lumos_ops.lumos.checkpoint import LoadedModel, psf_fwhm_px_range
    from lumos_ops.sim.survey_config import SurveyConfig

    def loaded(metadata):
        return LoadedModel(net=None, arch="fast", normalization=NORM, metadata=metadata, sha256="", path="m.pt",
                           device=torch.device("cpu"))

    default = SurveyConfig()
    recipe = {"recipe": {"survey": {"bands": ["NB685"], "seed": 1}}}
    assert loaded(recipe).trained_psf_fwhm_px == pytest.approx(
        (default.psf_fwhm_range[0] / default.pixel_scale, default.psf_fwhm_range[1] / default.pixel_scale))
    assert loaded({"recipe": {"survey": {"psf_fwhm_range": [1.0, 2.0], "pixel_scale": 0.5}}}).trained_psf_fwhm_px == (2.0, 4.0)
    assert loaded({**recipe, "adapt": {"base_model": "x"}}).trained_psf_fwhm_px is None
    assert loaded({**recipe, "adapt": {}, "psf_fwhm_px_range": [1.1, 1.9]}).trained_psf_fwhm_px == (1.1, 1.9)
    assert loaded({}).trained_psf_fwhm_px is None
    span = psf_fwhm_px_range(np.r_[np.full(500, 0.8), np.full(500, 1.2), np.nan], 0.4)
    assert span == [2.0, 3.0] and psf_fwhm_px_range(np.array([np.nan]), 0.4) is None


@pytest.mark.parametrize("trained_band", ["NB685", "NB455"])
def test_targets_in_untrained_bands_are_flagged(trained_band, exposure_and_catalog, tmp_path, caplog):
    """The exposure is NB685, epoch 1; a model trained on NB455 only flags all its measured targets."""
    torch.manual_seed(0)
    path = tmp_path / "one-band.pt"
    rows = [band_epoch_index(trained_band, 0), band_epoch_index(trained_band, 1)]
    save_checkpoint(path, get_model("fast").eval(), arch="fast", normalization=NORM,
                    metadata={"truncation_imag": 20.5, "trained_band_epochs": rows})
    exposure, catalog = exposure_and_catalog
    frame = LumosMethod(model=path, device="cpu").measure(prepare_targets(exposure, catalog))
    flagged = (frame["flag"].to_numpy() & int(Flag.UNTRAINED_BAND)) != 0
    on_image = (frame["flag"].to_numpy() & int(Flag.OFF_IMAGE)) == 0
    assert np.array_equal(flagged, on_image if trained_band == "NB455" else np.zeros_like(flagged))
    assert ("UNTRAINED_BAND" in caplog.text) == (trained_band == "NB455")


def test_shipped_default_knows_the_bands_of_its_recipe():
    from lumos_ops.lumos.recipe import RECIPES

    trained = load_checkpoint(None, device="cpu").trained_band_epochs
    survey = RECIPES["default"].survey
    epochs = range(int(survey.get("n_epochs", 2)))
    assert trained == {band_epoch_index(b, e) for b in survey["bands"] for e in epochs}


def test_lumos_method_option_errors():
    with pytest.raises(ValueError, match="either"):
        LumosMethod(model="a", model_path="b")


@pytest.mark.gpu
def test_cuda_matches_cpu(checkpoint):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    inputs, imag = _inputs(33)
    cpu = predict_mixtures(load_checkpoint(checkpoint, device="cpu"), inputs, imag, batch_size=8)
    gpu = predict_mixtures(load_checkpoint(checkpoint, device="cuda"), inputs, imag, batch_size=8)
    np.testing.assert_allclose(gpu.mu, cpu.mu, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_measure_exposure_on_cuda_matches_cpu(tmp_path):
    """The production path (read, stamps, network, statistics) gives the same photometry on a GPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
    from lumos_ops.measure import measure_exposure

    catalog = random_catalog(300, shape=(512, 512), margin=40.0, seed=3)
    flux = 10 ** (-0.4 * (catalog["i_auto"].to_numpy() - 25.0))
    exposure = read_exposure(synthetic_exposure(catalog, flux, shape=(512, 512), seed=4).write(tmp_path / "e.fits"))
    tables = {device: measure_exposure(exposure, catalog, methods=("lumos",),
                                       instances={"lumos": LumosMethod(device=device)})
              for device in ("cpu", "cuda")}
    cpu, gpu = tables["cpu"], tables["cuda"]
    assert list(gpu["flag"]) == list(cpu["flag"])
    ok = np.isfinite(cpu["flux"].to_numpy())
    assert ok.sum() > 250
    shift = (gpu["flux"] - cpu["flux"]).abs() / cpu["flux_err"]
    assert shift[ok].max() < 1e-3
    np.testing.assert_allclose(gpu["flux_err"][ok], cpu["flux_err"][ok], rtol=1e-3)
