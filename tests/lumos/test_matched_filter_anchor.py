"""The matched-filter anchor of ``fast-mf`` networks (``ModelConfig.anchor``)."""

import numpy as np
import pytest
import torch

from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint, weights_sha256
from lumos_ops.lumos.config import ModelConfig, Normalization
from lumos_ops.lumos.fastpath import inference_callable
from lumos_ops.lumos.model import get_model
from lumos_ops.lumos.preprocess import prepare_inputs
from lumos_ops.lumos.train import TrainConfig, train

from lumos_helpers import centred_gaussian

SIZE = 60


def _inputs(flux: float, noise: float, n: int, seed: int, norm: Normalization, sky: float = 5.0):
    """n noisy stamps of a Gaussian galaxy of ``flux`` (e-/s) that is exactly its model."""
    model = centred_gaussian(2.0)
    rng = np.random.default_rng(seed)
    stamps = flux * model[None] + sky + noise * rng.standard_normal((n, SIZE, SIZE))
    inputs = prepare_inputs(stamps.astype(np.float32), np.repeat(model[None], n, axis=0), np.full(n, 22.0),
                            np.full(n, 100.0), np.full(n, 100.0), np.zeros(n, dtype=np.int64), norm)
    return inputs, model


def _norm(pixel_scale: float = 0.3) -> Normalization:
    return Normalization(pixel_scale=pixel_scale, flux_scale=100.0, model_scale=1.0 / centred_gaussian(2.0).max(),
                         stamp_background="masked_annulus")


def test_matched_filter_is_the_optimal_weighted_sum_with_its_error():
    """Flux scatter, error and pixel noise on 3,000 stamps agree with the Cramér–Rao values."""
    norm = _norm()
    noise = 0.3
    inputs, model = _inputs(40.0, noise, 3000, seed=1, norm=norm)
    net = get_model("fast-mf", n_band_epochs=2).eval()
    net.bind_normalization(norm)
    with torch.no_grad():
        flux, error, pixel_noise = net.matched_filter(torch.from_numpy(inputs.images))
    flux = flux.numpy() * norm.flux_scale
    error = error.numpy() * norm.flux_scale
    crb = noise / np.sqrt((model**2).sum())
    assert np.mean(flux) == pytest.approx(40.0, abs=3 * crb / np.sqrt(3000) + 0.1)
    assert np.std(flux) == pytest.approx(crb, rel=0.05)
    assert np.median(error) == pytest.approx(crb, rel=0.05)
    assert float(pixel_noise.median()) * norm.pixel_scale == pytest.approx(noise, rel=0.05)


def test_anchored_outputs_are_the_head_relative_to_the_matched_filter():
    """Every component is ``mu = f_mf + s_mf * mu_net``, ``sigma = s_mf * (softplus(sigma_net) + floor)``
    with ``mu_net``, ``sigma_net`` the head's raw outputs (captured by a forward hook)."""
    torch.manual_seed(0)
    net = get_model("fast-mf", n_band_epochs=2).eval()
    norm = _norm()
    net.bind_normalization(norm)
    inputs, _ = _inputs(30.0, 0.3, 8, seed=2, norm=norm)
    raw = {}
    net.head.register_forward_hook(lambda module, args, out: raw.setdefault("out", out.detach().clone()))
    with torch.no_grad():
        images = torch.from_numpy(inputs.images)
        flux, error, _ = net.matched_filter(images)
        out = net(images, torch.from_numpy(inputs.scalars), torch.from_numpy(inputs.band_epoch))
    k = net.config.n_components
    head = raw["out"]
    torch.testing.assert_close(out.mu, flux[:, None] + error[:, None] * head[:, k:2 * k])
    floor = net.config.sigma_floor
    torch.testing.assert_close(out.sigma, error[:, None] * (torch.nn.functional.softplus(head[:, 2 * k:]) + floor))
    torch.testing.assert_close(out.log_alpha, torch.log_softmax(head[:, :k], dim=1))


def test_padded_pixels_leave_the_flux_and_its_error_unbiased():
    """A stamp half off the CCD (NaN pixels, padded by ``prepare_inputs``): the matched filter sums
    the model over the measured pixels only and the noise over the measured ones, so the flux stays
    unbiased and its error grows as the light lost; a stamp with every pixel measured is unchanged."""
    norm = _norm()
    noise = 0.3
    model = centred_gaussian(2.0)
    model_f = model.astype(np.float32)
    rng = np.random.default_rng(6)
    stamps = 40.0 * model[None] + 5.0 + noise * rng.standard_normal((2000, SIZE, SIZE))
    stamps[:, :, :27] = np.nan
    padded = prepare_inputs(stamps.astype(np.float32), np.repeat(model_f[None], 2000, axis=0), np.full(2000, 22.0),
                            np.full(2000, 100.0), np.full(2000, 100.0), np.zeros(2000, dtype=np.int64), norm)
    net = get_model("fast-mf", n_band_epochs=2).eval()
    net.bind_normalization(norm)
    with torch.no_grad():
        flux, error, pixel_noise = (v.numpy() for v in net.matched_filter(torch.from_numpy(padded.images)))
    kept = model[:, 27:]
    crb = noise / np.sqrt((kept**2).sum())
    assert np.median(flux) * norm.flux_scale == pytest.approx(40.0, abs=0.2)
    assert np.std(flux) * norm.flux_scale == pytest.approx(crb, rel=0.06)
    assert np.median(error) * norm.flux_scale == pytest.approx(crb, rel=0.06)
    assert np.median(pixel_noise) * norm.pixel_scale == pytest.approx(noise, rel=0.05)


def test_traced_inference_graph_matches_the_eager_network():
    torch.manual_seed(1)
    net = get_model("fast-mf", n_band_epochs=2).eval()
    norm = _norm()
    net.bind_normalization(norm)
    inputs, _ = _inputs(20.0, 0.3, 16, seed=3, norm=norm)
    args = (torch.from_numpy(inputs.images), torch.from_numpy(inputs.scalars), torch.from_numpy(inputs.band_epoch))
    with torch.no_grad():
        eager = net(*args)
        traced = inference_callable(net, *args)(*args)
    for a, b in zip(eager, traced):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unbound_network_returns_nan_and_cannot_be_saved(tmp_path):
    net = get_model("fast-mf", n_band_epochs=2).eval()
    inputs, _ = _inputs(20.0, 0.3, 4, seed=4, norm=_norm())
    with torch.no_grad():
        out = net(torch.from_numpy(inputs.images), torch.from_numpy(inputs.scalars), torch.from_numpy(inputs.band_epoch))
    assert torch.isnan(out.mu).all()
    with pytest.raises(LumosValueError, match="bind_normalization"):
        save_checkpoint(tmp_path / "m.pt", net, arch="fast-mf", normalization=_norm())


def test_checkpoint_round_trip_and_a_normalisation_that_disagrees(tmp_path):
    net = get_model("fast-mf", n_band_epochs=2)
    norm = _norm()
    net.bind_normalization(norm)
    path = tmp_path / "m.pt"
    save_checkpoint(path, net, arch="fast-mf", normalization=norm)
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.net.anchored and loaded.net.config.anchor == "matched_filter"
    data = torch.load(path, weights_only=True)
    data["normalization"]["flux_scale"] = 50.0
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="matched-filter constants"):
        load_checkpoint(tmp_path / "bad.pt", device="cpu")
    data["normalization"]["flux_scale"] = norm.flux_scale
    data["state_dict"]["anchor_constants"][1] *= 2.0
    data["sha256"] = weights_sha256(data["state_dict"])
    torch.save(data, tmp_path / "bad2.pt")
    with pytest.raises(ModelError, match="matched-filter constants"):
        load_checkpoint(tmp_path / "bad2.pt", device="cpu")


def test_config_validation_and_older_configs():
    with pytest.raises(LumosValueError, match="anchor"):
        ModelConfig(anchor="aperture")
    plain = get_model("fast").config.to_dict()
    assert "anchor" not in plain and ModelConfig.from_dict(plain).anchor == "none"
    assert not get_model("fast").anchored
    anchored = get_model("fast-mf").config.to_dict()
    assert ModelConfig.from_dict(anchored) == get_model("fast-mf").config and anchored["anchor"] == "matched_filter"


def test_training_an_anchored_network_binds_it(tiny_training_set, tmp_path):
    config = TrainConfig(arch="fast-mf", epochs=1, batch_size=32, seed=3, device="cpu", progress=False, norm_sample=64)
    metrics = train(tiny_training_set, tmp_path / "m", config)
    assert np.isfinite(metrics["history"][-1]["val_loss"])
    loaded = load_checkpoint(tmp_path / "m" / "model.pt", device="cpu")
    assert loaded.net.anchored
    assert torch.all(torch.isfinite(loaded.net.anchor_constants))
