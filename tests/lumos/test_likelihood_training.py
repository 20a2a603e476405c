"""Importance weights turn a trained posterior into the likelihood (docs/likelihood.md §2)."""

import numpy as np
import pytest
import torch

from lumos_ops.flux_prior import ReferencePrior
from lumos_ops.lumos.inference import Mixtures, mixture_table
from lumos_ops.lumos.losses import supervised_loss
from lumos_ops.lumos.model import MixtureParams


def test_weighted_loss_is_the_weighted_mean():
    params = MixtureParams(torch.log(torch.full((4, 2), 0.5)), torch.zeros(4, 2), torch.ones(4, 2))
    flux = torch.tensor([0.0, 1.0, 2.0, -1.0])
    trunc = torch.zeros(4, dtype=torch.bool)
    per_row = torch.stack([supervised_loss(MixtureParams(*(t[i : i + 1] for t in params)), flux[i : i + 1], trunc[i : i + 1])
                           for i in range(4)])
    w = torch.tensor([1.0, 2.0, 0.5, 0.0])
    assert float(supervised_loss(params, flux, trunc, w)) == pytest.approx(float((w * per_row).sum() / w.sum()), rel=1e-6)
    assert float(supervised_loss(params, flux, trunc)) == pytest.approx(float(per_row.mean()), rel=1e-6)


def _fit(x, f, weight, edges):
    """Gaussian 'network' with one mean per bin of x and one width, fitted by the (weighted) supervised loss."""
    idx = torch.from_numpy(np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2))
    theta = torch.zeros(len(edges), dtype=torch.float64)
    theta[:-1] = torch.from_numpy(0.5 * (edges[1:] + edges[:-1]))
    theta.requires_grad_(True)
    ft = torch.from_numpy(f)
    wt = None if weight is None else torch.from_numpy(weight)
    trunc = torch.zeros(x.size, dtype=torch.bool)
    opt = torch.optim.LBFGS([theta], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        mu = theta[:-1][idx][:, None]
        params = MixtureParams(torch.zeros_like(mu), mu, torch.exp(theta[-1]).expand_as(mu))
        loss = supervised_loss(params, ft, trunc, wt)
        loss.backward()
        return loss

    opt.step(closure)
    out = theta.detach().numpy()
    return out[:-1], float(np.exp(out[-1]))


PRIOR = ReferencePrior(low=-40.0, high=200.0, asinh_scale=5.0, flat_fraction=0.2)
EDGES = np.linspace(-10.0, 30.0, 21)
CENTRES = 0.5 * (EDGES[1:] + EDGES[:-1])


def _faint_draws() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True fluxes ``f`` drawn from ``PRIOR`` (mostly faint: the asinh part), stamps ``x = f + N(0, 4)``
    (the likelihood of f is N(x, 4)), and which ``x`` fall within ``EDGES``."""
    rng = np.random.default_rng(3)
    f = PRIOR.sample(rng, 200_000)
    x = f + rng.normal(0.0, 4.0, f.size)
    return f, x, (x >= EDGES[0]) & (x < EDGES[-1])


def test_weights_remove_the_shrinkage_toward_the_training_prior():
    prior, edges, centres = PRIOR, EDGES, CENTRES
    f, x, inside = _faint_draws()
    mu_post, _ = _fit(x[inside], f[inside], None, edges)
    mu_like, width = _fit(x[inside], f[inside], prior.importance_weights(f[inside]), edges)
    faint = (centres > 2.0) & (centres < 15.0)
    # unweighted: the mean at fixed x is pulled toward the faint-heavy training prior
    assert np.all(mu_post[faint] < centres[faint] - 0.4)
    # weighted: the fit is the likelihood N(x, 4), centred on x
    np.testing.assert_allclose(mu_like[faint], centres[faint], atol=0.35)
    assert width == pytest.approx(4.0, rel=0.05)


def test_balanced_weights_keep_the_likelihood_and_give_the_faint_stamps_their_share():
    # the balanced weights put x (a function of the stamp) in place of f in the denominator of the
    # importance weight
    prior, edges, centres = PRIOR, EDGES, CENTRES
    f, x, inside = _faint_draws()
    balanced = prior.balanced_weights(f, x)
    mu, width = _fit(x[inside], f[inside], balanced[inside], edges)
    faint = (centres > 2.0) & (centres < 15.0)
    np.testing.assert_allclose(mu[faint], centres[faint], atol=0.35)
    assert width == pytest.approx(4.0, rel=0.05)
    # the loss share of the stamps that look faint: the sampling density's, not the flat prior's
    looks_faint = x < 15.0
    importance = prior.importance_weights(f)
    share = {name: w[looks_faint].sum() / w.sum() for name, w in (("importance", importance), ("balanced", balanced))}
    assert share["importance"] == pytest.approx(55.0 / 240.0, abs=0.03)  # flat on [-40, 200]
    assert share["balanced"] > 2 * share["importance"]
    assert share["balanced"] == pytest.approx(looks_faint.mean(), abs=0.03)
    # the pixels' estimate must stand in: with the true flux there the weights are 1 (no prior change)
    np.testing.assert_allclose(prior.balanced_weights(f, f), 1.0)
    assert prior.balanced_weights(np.array([prior.high + 1.0]), np.array([10.0]))[0] == 0.0


def test_mixture_table_reports_likelihood_median_and_half_width():
    rng = np.random.default_rng(0)
    alpha = rng.dirichlet(np.ones(3), 5)
    mix = Mixtures(alpha=alpha, mu=rng.normal(5, 2, (5, 3)), sigma=rng.uniform(1, 2, (5, 3)), truncated=np.zeros(5, bool))
    like = mixture_table(mix, likelihood=True)
    post = mixture_table(mix, likelihood=False)
    np.testing.assert_array_equal(like["flux"], like["median"])
    np.testing.assert_array_equal(like["flux_err"], like["sigma68"])
    assert like["likelihood"].all() and not post["likelihood"].any()
    np.testing.assert_allclose(post["flux"], (alpha * mix.mu).sum(1))


def test_measurements_near_the_top_of_the_prior_are_flagged(tmp_path):
    from lumos_ops.flags import Flag
    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.lumos.checkpoint import save_checkpoint
    from lumos_ops.lumos.method import LumosMethod
    from lumos_ops.lumos.model import get_model
    from lumos_ops.measure import prepare_targets

    from lumos_helpers import NORM, write_exposure

    torch.manual_seed(0)
    net = get_model("fast").eval()
    frames = {}
    for name, high in (("wide", 1e9), ("narrow", 1e-6)):
        prior = ReferencePrior(low=-1e-6 if high < 1 else -40.0, high=high)
        path = tmp_path / f"{name}.pt"
        save_checkpoint(path, net, arch="fast", normalization=NORM,
                        metadata={"truncation_imag": None, "flux_prior": prior.to_dict()})
        exposure, catalog = write_exposure(tmp_path / f"{name}.fits", seed=2)
        frames[name] = LumosMethod(model=path).measure(prepare_targets(read_exposure(exposure), catalog))
    assert frames["wide"]["likelihood"].all()
    assert not (frames["wide"]["flag"].to_numpy() & int(Flag.PRIOR_EDGE)).any()
    assert (frames["narrow"]["flag"].to_numpy() & int(Flag.PRIOR_EDGE)).all()
