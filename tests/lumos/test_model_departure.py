"""The model-departure features and the width head of ``fast-mf-r`` networks
(``LumosNet.model_departure``), and their warm start from a ``fast-mf`` checkpoint."""

import numpy as np
import pytest
import torch

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.config import Normalization
from lumos_ops.lumos.fastpath import inference_callable
from lumos_ops.lumos.model import get_model, widened_state
from lumos_ops.lumos.preprocess import prepare_inputs
from lumos_ops.lumos.train import TrainConfig, train

from lumos_helpers import centred_gaussian

SIZE = 60
MODEL = centred_gaussian(2.0)
NORM = Normalization(pixel_scale=0.3, flux_scale=100.0, model_scale=1.0 / MODEL.max(), stamp_background="masked_annulus")


def _images(truth: np.ndarray, flux: float, noise: float, n: int, seed: int) -> torch.Tensor:
    """Normalised images of ``n`` stamps whose pixels are ``flux * truth`` plus sky and Gaussian noise
    (e-/s) and whose model channel is :data:`MODEL`."""
    rng = np.random.default_rng(seed)
    stamps = flux * truth[None] + 5.0 + noise * rng.standard_normal((n, SIZE, SIZE))
    inputs = prepare_inputs(stamps.astype(np.float32), np.repeat(MODEL[None], n, axis=0), np.full(n, 22.0),
                            np.full(n, 100.0), np.full(n, 100.0), np.zeros(n, dtype=np.int64), NORM)
    return torch.from_numpy(inputs.images)


def _net():
    net = get_model("fast-mf-r", n_band_epochs=2).eval()
    net.bind_normalization(NORM)
    return net


def test_a_galaxy_that_is_its_model_departs_by_noise_only():
    """2,000 stamps that are exactly their model: the significance, the dilation and the asymmetry
    have mean 0 and spread 1, the fraction and the free-size flux shift are about 0."""
    with torch.no_grad():
        significance, fraction, dilation, shift, asymmetry = _net().model_departure(
            _images(MODEL, 40.0, 0.3, 2000, seed=1))
    for value in (significance, dilation, asymmetry):
        assert abs(float(value.mean())) < 0.15
        assert float(value.std()) == pytest.approx(1.0, abs=0.15)
    assert abs(float(fraction.median())) < 0.01
    assert abs(float(shift.mean())) < 0.15


def test_a_galaxy_wider_than_its_model_departs_by_the_light_the_model_misses():
    """A galaxy 30 % wider than its model at SNR ~ 200: a significant departure whose fraction is the
    noiseless one, ``sum(w e^2) / (a^2 sum(w m^2))`` with ``e = p - a m``, ``w = m / max(m)``; a
    positive dilation; and a free-size flux shift that takes back most of the matched filter's
    deficit (which is second order in the size change, so not all of it). A galaxy 10 % smaller
    has a negative dilation and a negative shift."""
    truth = centred_gaussian(2.6)
    net = _net()
    with torch.no_grad():
        significance, fraction, dilation, shift, asymmetry = net.model_departure(_images(truth, 400.0, 0.3, 500, seed=2))
        flux, error, _ = net.matched_filter(_images(truth, 400.0, 0.3, 500, seed=2))
    amplitude = (MODEL * truth).sum() / (MODEL**2).sum()
    weights = MODEL / MODEL.max()
    expected = (weights * (truth - amplitude * MODEL) ** 2).sum() / (amplitude**2 * (weights * MODEL**2).sum())
    assert float(significance.median()) > 20.0
    assert float(fraction.median()) == pytest.approx(expected, rel=0.1)
    assert float(dilation.median()) > 20.0
    deficit = 400.0 / NORM.flux_scale - flux
    corrected = deficit - shift * error
    assert float(deficit.median()) > 0.1 * 400.0 / NORM.flux_scale
    assert 0.0 < float(corrected.median()) < 0.5 * float(deficit.median())
    with torch.no_grad():
        _, _, dilation, shift, _ = net.model_departure(_images(centred_gaussian(1.8), 400.0, 0.3, 200, seed=5))
    assert float(dilation.median()) < -5.0 and float(shift.median()) < 0.0
    assert abs(float(asymmetry.median())) < 2.0


def test_a_neighbour_is_asymmetric_where_a_size_error_is_not():
    """A galaxy that is its model with a neighbour of half its flux 6 px away: a large asymmetry,
    where the galaxy 30 % wider than its model above has none."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    centre = (SIZE - 1) / 2.0
    neighbour = np.exp(-((xx - centre - 6.0) ** 2 + (yy - centre) ** 2) / (2.0 * 1.5**2))
    truth = MODEL + 0.5 * neighbour / neighbour.sum()
    with torch.no_grad():
        asymmetry = _net().model_departure(_images(truth, 400.0, 0.3, 200, seed=6))[4]
    assert float(asymmetry.median()) > 20.0


def test_a_widened_network_computes_what_its_base_did():
    """A ``fast-mf`` network's weights completed with a new width head (last layer zero) give the
    same mixture, bit for bit, on stamps whose departure is far from zero."""
    torch.manual_seed(0)
    base = get_model("fast-mf", n_band_epochs=2).eval()
    base.bind_normalization(NORM)
    net = _net()
    net.load_state_dict(widened_state(base.state_dict(), net))
    images = _images(centred_gaussian(2.6), 400.0, 0.3, 8, seed=3)
    scalars, band_epoch = torch.zeros(8, 4), torch.zeros(8, dtype=torch.int64)
    with torch.no_grad():
        assert float(net.model_departure(images)[0].min()) > 5.0
        for a, b in zip(base(images, scalars, band_epoch), net(images, scalars, band_epoch)):
            assert torch.equal(a, b)
    with pytest.raises(LumosValueError, match="cannot widen"):
        widened_state(get_model("fast", n_band_epochs=2).state_dict(), net)


def test_the_width_head_scales_every_width_and_no_mean():
    """``sigma = s_mf (softplus(raw) + floor) exp(h)`` with ``h`` the width head's output (a hook),
    and the means are those of the same network without the head."""
    torch.manual_seed(2)
    base = get_model("fast-mf", n_band_epochs=2).eval()
    base.bind_normalization(NORM)
    net = _net()
    net.load_state_dict(widened_state(base.state_dict(), net))
    torch.nn.init.normal_(net.width_head[2].weight, std=0.5)
    captured = {}
    net.width_head.register_forward_hook(lambda module, args, out: captured.setdefault("h", out.detach().clone()))
    images = _images(centred_gaussian(2.6), 200.0, 0.3, 8, seed=7)
    scalars, band_epoch = torch.zeros(8, 4), torch.zeros(8, dtype=torch.int64)
    with torch.no_grad():
        plain, widened = base(images, scalars, band_epoch), net(images, scalars, band_epoch)
    assert captured["h"].abs().max() > 0.01
    assert torch.equal(plain.mu, widened.mu) and torch.equal(plain.log_alpha, widened.log_alpha)
    torch.testing.assert_close(widened.sigma, plain.sigma * torch.exp(captured["h"]))


def test_traced_inference_graph_matches_the_eager_network():
    torch.manual_seed(1)
    net = _net()
    torch.nn.init.normal_(net.width_head[2].weight, std=0.5)
    images = _images(centred_gaussian(2.6), 100.0, 0.3, 16, seed=4)
    args = (images, torch.zeros(16, 4), torch.zeros(16, dtype=torch.int64))
    with torch.no_grad():
        eager = net(*args)
        traced = inference_callable(net, *args)(*args)
    for a, b in zip(eager, traced):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_fast_mf_checkpoint_starts_a_fast_mf_r_training(tiny_training_set, tmp_path):
    """``init_model`` of another arch is refused, except a ``fast-mf`` checkpoint for a ``fast-mf-r``
    training: that one trains and is saved as ``fast-mf-r``. With ``train_only="width_head"`` every
    other weight and BatchNorm statistic stays the checkpoint's, and the head moves."""
    base = dict(epochs=1, batch_size=32, seed=3, device="cpu", progress=False, norm_sample=64)
    train(tiny_training_set, tmp_path / "mf", TrainConfig(arch="fast-mf", **base))
    train(tiny_training_set, tmp_path / "plain", TrainConfig(arch="fast", **base))
    metrics = train(tiny_training_set, tmp_path / "r",
                    TrainConfig(arch="fast-mf-r", init_model=str(tmp_path / "mf" / "model.pt"), train_only="width_head",
                                lr=1e-2, **base))
    assert np.isfinite(metrics["history"][-1]["val_loss"])
    loaded = load_checkpoint(tmp_path / "r" / "model.pt", device="cpu")
    assert loaded.arch == "fast-mf-r" and loaded.net.config.anchor == "matched_filter_residual"
    start = load_checkpoint(tmp_path / "mf" / "model.pt", device="cpu").net.state_dict()
    trained = loaded.net.state_dict()
    for key, value in start.items():
        assert torch.equal(value, trained[key]), key
    assert trained["width_head.2.weight"].abs().max() > 0
    with pytest.raises(LumosValueError, match="train_only"):
        train(tiny_training_set, tmp_path / "bad", TrainConfig(arch="fast-mf", train_only="width_head", **base))
    with pytest.raises(LumosValueError, match="differs"):
        train(tiny_training_set, tmp_path / "bad",
              TrainConfig(arch="fast-mf-r", init_model=str(tmp_path / "plain" / "model.pt"), **base))


def _profile_net():
    net = get_model("fast-mf", n_band_epochs=2, profile_error="dilation").eval()
    net.bind_normalization(NORM)
    return net


def test_profile_variance_is_the_matched_filter_error_of_a_resized_galaxy():
    """Galaxies 10 % larger than their model at two fluxes: the mean of ``1 + profile_variance`` is
    the matched filter's mean squared error (in ``s_mf^2``) to 10 %; a galaxy that is its model gets
    a profile error in under 6 % of its stamps."""
    net = _profile_net()
    for flux in (100.0, 400.0):
        images = _images(centred_gaussian(2.2), flux, 0.3, 1000, seed=3)
        with torch.no_grad():
            variance = net.profile_variance(images)
            estimate, error, _ = net.matched_filter(images)
        mse = float((((estimate * NORM.flux_scale - flux) / (error * NORM.flux_scale)) ** 2).mean())
        assert float((1.0 + variance).mean()) == pytest.approx(mse, rel=0.1)
    with torch.no_grad():
        exact = net.profile_variance(_images(MODEL, 400.0, 0.3, 2000, seed=4))
    assert float((exact > 0).float().mean()) < 0.06


def test_profile_error_adds_in_quadrature_and_leaves_the_means():
    """``sigma_k^2 = sigma_k(none)^2 + s_mf^2 profile_variance`` with the same weights and means."""
    torch.manual_seed(4)
    plain = get_model("fast-mf", n_band_epochs=2).eval()
    plain.bind_normalization(NORM)
    net = _profile_net()
    net.load_state_dict(plain.state_dict())
    images = _images(centred_gaussian(2.4), 300.0, 0.3, 8, seed=8)
    scalars, band_epoch = torch.zeros(8, 4), torch.zeros(8, dtype=torch.int64)
    with torch.no_grad():
        a, b = plain(images, scalars, band_epoch), net(images, scalars, band_epoch)
        _, error, _ = net.matched_filter(images)
        variance = net.profile_variance(images)
    assert float(variance.min()) > 0
    assert torch.equal(a.mu, b.mu) and torch.equal(a.log_alpha, b.log_alpha)
    torch.testing.assert_close(b.sigma, torch.sqrt(a.sigma**2 + (error**2 * variance)[:, None]))


def test_profile_error_config():
    with pytest.raises(LumosValueError, match="profile_error"):
        get_model("fast-mf", profile_error="knots")
    with pytest.raises(LumosValueError, match="anchored"):
        get_model("fast", profile_error="dilation")
    assert "profile_error" not in get_model("fast-mf").config.to_dict()
    assert get_model("fast-mf", profile_error="dilation").config.to_dict()["profile_error"] == "dilation"
