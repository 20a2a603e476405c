"""Losses eqs. (8), (10), (11), (12) against direct numerical integration, and their gradients."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from lumos_ops.lumos.losses import (
    mdn_nll,
    pair_overlap_nll,
    supervised_loss,
    transfer_loss,
    truncated_mdn_nll,
)
from lumos_ops.lumos.model import MixtureParams


def _params(seed: int, n: int = 3, k: int = 4, dtype=torch.float64, spread: float = 3.0) -> MixtureParams:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=dtype)
    mu = spread * torch.randn(n, k, generator=g, dtype=dtype) + 1.0
    sigma = 0.3 + torch.rand(n, k, generator=g, dtype=dtype) * 2.0
    return MixtureParams(torch.log_softmax(logits, 1), mu, sigma)


def _row(p: MixtureParams, i: int):
    return p.log_alpha[i].exp().numpy(), p.mu[i].numpy(), p.sigma[i].numpy()


def _density(a, m, s, truncated):
    def f(x):
        comps = a * stats.norm.pdf(x, m, s)
        if truncated:
            comps = comps / stats.norm.cdf(m / s)
        return comps.sum()

    return f


def test_mdn_nll_matches_mixture_density():
    p = _params(0)
    flux = torch.tensor([0.3, -1.0, 4.0], dtype=torch.float64)
    got = mdn_nll(p, flux).numpy()
    for i in range(3):
        a, m, s = _row(p, i)
        assert got[i] == pytest.approx(-math.log(_density(a, m, s, False)(flux[i].item())), rel=1e-10)
        total, _ = integrate.quad(_density(a, m, s, False), -60, 60, limit=200)
        assert total == pytest.approx(1.0, abs=1e-8)


def test_truncated_nll_is_normalised_on_positive_fluxes():
    p = _params(1)
    flux = torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64)
    got = truncated_mdn_nll(p, flux).numpy()
    for i in range(3):
        a, m, s = _row(p, i)
        dens = _density(a, m, s, True)
        total, _ = integrate.quad(dens, 0, 80, limit=200)
        assert total == pytest.approx(1.0, abs=1e-7)
        assert got[i] == pytest.approx(-math.log(dens(flux[i].item())), rel=1e-10)


def test_truncated_nll_stable_for_very_negative_components():
    p = MixtureParams(
        torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64)),
        torch.tensor([[-60.0, 1.0]], dtype=torch.float64, requires_grad=True),
        torch.tensor([[1.0, 1.0]], dtype=torch.float64, requires_grad=True),
    )
    loss = truncated_mdn_nll(p, torch.tensor([0.01], dtype=torch.float64))
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(p.mu.grad).all() and torch.isfinite(p.sigma.grad).all()


@pytest.mark.parametrize("any_truncated", [False, True])
def test_supervised_loss_gradient_finite_for_a_collapsed_component_below_zero(any_truncated):
    """A float32 component of width 2e-6 at -0.10009 (mu / sigma = -50045, where log_ndtr's gradient is
    NaN) on rows that use eq. (8): the gradient stays finite whether or not other rows use eq. (10)."""
    mu = torch.tensor([[-0.10009, 0.5], [-0.10009, 0.5]], dtype=torch.float32, requires_grad=True)
    sigma = torch.tensor([[2e-6, 0.3], [2e-6, 0.3]], dtype=torch.float32, requires_grad=True)
    p = MixtureParams(torch.log(torch.tensor([[0.01, 0.99], [0.01, 0.99]])), mu, sigma)
    assert not torch.isfinite(torch.autograd.grad(torch.special.log_ndtr(mu / sigma)[0, 0], mu)[0]).all()
    trunc = torch.tensor([False, any_truncated])
    flux = torch.tensor([0.4, 0.6])
    loss = supervised_loss(p, flux, trunc)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(mu.grad[0]).all() and torch.isfinite(sigma.grad[0]).all()


def test_supervised_loss_mixes_eq8_and_eq10():
    p = _params(2)
    flux = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    trunc = torch.tensor([True, False, True])
    expected = torch.stack(
        [truncated_mdn_nll(p, flux)[0], mdn_nll(p, flux)[1], truncated_mdn_nll(p, flux)[2]]
    ).mean()
    assert supervised_loss(p, flux, trunc).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("truncated", [True, False])
def test_pair_overlap_matches_quadrature(truncated):
    p1, p2 = _params(3, k=3), _params(4, k=5)
    got = pair_overlap_nll(p1, p2, truncated=truncated).numpy()
    for i in range(3):
        d1 = _density(*_row(p1, i), truncated)
        d2 = _density(*_row(p2, i), truncated)
        lower = 0.0 if truncated else -60.0
        pts = np.concatenate([p1.mu[i].numpy(), p2.mu[i].numpy()])
        pts = pts[(pts > lower) & (pts < 60)]
        overlap, _ = integrate.quad(lambda x, d1=d1, d2=d2: d1(x) * d2(x), lower, 60, points=pts, limit=400)
        assert got[i] == pytest.approx(-math.log(overlap), rel=1e-7)


def test_transfer_loss_is_sum_of_terms():
    p, p1, p2 = _params(5), _params(6), _params(7)
    flux = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    trunc = torch.tensor([False, True, True])
    total, supervised, pair = transfer_loss(p, flux, trunc, p1, p2, pair_weight=0.5)
    assert supervised.item() == pytest.approx(supervised_loss(p, flux, trunc).item(), rel=1e-12)
    assert pair.item() == pytest.approx(pair_overlap_nll(p1, p2).mean().item(), rel=1e-12)
    assert total.item() == pytest.approx(supervised.item() + 0.5 * pair.item(), rel=1e-12)
    weight = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    weighted = transfer_loss(p, flux, trunc, p1, p2, sim_weight=weight, pair_truncated=False)
    assert weighted.supervised.item() == pytest.approx(supervised_loss(p, flux, trunc, weight).item(), rel=1e-12)
    assert weighted.pair.item() == pytest.approx(pair_overlap_nll(p1, p2, truncated=False).mean().item(), rel=1e-12)


def _raw(seed, n=2, k=3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True),
        (2 * torch.randn(n, k, generator=g, dtype=torch.float64)).requires_grad_(),
        (0.5 + torch.rand(n, k, generator=g, dtype=torch.float64)).requires_grad_(),
    )


def _wrap(logits, mu, sigma):
    return MixtureParams(torch.log_softmax(logits, 1), mu, sigma)


def test_gradients_supervised():
    flux = torch.tensor([0.7, 1.5], dtype=torch.float64)
    trunc = torch.tensor([True, False])
    assert torch.autograd.gradcheck(lambda *a: supervised_loss(_wrap(*a), flux, trunc), _raw(8))
    assert torch.autograd.gradcheck(lambda *a: truncated_mdn_nll(_wrap(*a), flux), _raw(9))
    assert torch.autograd.gradcheck(lambda *a: mdn_nll(_wrap(*a), flux), _raw(10))


def test_gradients_pair():
    second = _raw(12)

    def fn(l1, m1, s1, l2, m2, s2):
        return pair_overlap_nll(_wrap(l1, m1, s1), _wrap(l2, m2, s2))

    assert torch.autograd.gradcheck(fn, _raw(11) + second)


def test_truncation_term_carries_gradient():
    """The eq. (10) normalisation depends on mu/sigma: its gradient differs from eq. (8)'s."""
    logits, mu, sigma = _raw(13)
    flux = torch.tensor([0.2, 0.4], dtype=torch.float64)
    g10 = torch.autograd.grad(truncated_mdn_nll(_wrap(logits, mu, sigma), flux).sum(), mu)[0]
    g8 = torch.autograd.grad(mdn_nll(_wrap(logits, mu, sigma), flux).sum(), mu)[0]
    assert not torch.allclose(g10, g8)
