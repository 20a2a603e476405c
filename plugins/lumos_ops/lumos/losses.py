"""Loss functions of LUMOS (§4.2-4.4): eqs. (8), (10), (11) and (12).

All losses are negative log likelihoods computed in log space (``logsumexp`` over components,
``torch.special.log_ndtr`` for the Gaussian normalisation on f > 0), so every term -- including
the truncation term of eq. (10) that the reference code detached -- carries a gradient and stays
finite for components far on the negative side. Fluxes and widths may be in any unit as long as
targets and mixtures share it; changing the unit shifts a loss by a constant only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from lumos_ops.lumos.model import MixtureParams

__all__ = [
    "gaussian_log_pdf",
    "mdn_nll",
    "truncated_mdn_nll",
    "supervised_loss",
    "pair_overlap_nll",
    "transfer_loss",
    "TransferLoss",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_pdf(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``log N(x; mu, sigma)`` element-wise (broadcasting)."""
    z = (x - mu) / sigma
    return -0.5 * z * z - torch.log(sigma) - _LOG_SQRT_2PI


def _component_log_pdf(params: MixtureParams, flux: torch.Tensor, *, truncated: bool | torch.Tensor) -> torch.Tensor:
    log_pdf = params.log_alpha + gaussian_log_pdf(flux[:, None], params.mu, params.sigma)
    if isinstance(truncated, bool):
        if truncated:
            log_pdf = log_pdf - torch.special.log_ndtr(params.mu / params.sigma)
        return log_pdf
    if not bool(truncated.any()):
        return log_pdf
    # the ratio of the rows that are not truncated is replaced before log_ndtr, not only its result
    # after: log_ndtr's float32 gradient is NaN at some ratios beyond -5e4 (a component of width ~1e-6
    # below zero), and where() passes a NaN gradient of the branch it does not select on as NaN
    rows = truncated[:, None]
    ratio = torch.where(rows, params.mu / params.sigma, torch.zeros_like(params.mu))
    return log_pdf - torch.where(rows, torch.special.log_ndtr(ratio), torch.zeros_like(ratio))


def mdn_nll(params: MixtureParams, flux: torch.Tensor) -> torch.Tensor:
    """Eq. (8): ``-log sum_k alpha_k N(f; mu_k, sigma_k)`` per row.

    Parameters
    ----------
    params : MixtureParams
        Tensors of shape (n, K).
    flux : Tensor, shape (n,)
        True fluxes (same unit as ``params.mu``).

    Returns
    -------
    Tensor, shape (n,)
    """
    return -torch.logsumexp(_component_log_pdf(params, flux, truncated=False), dim=1)


def truncated_mdn_nll(params: MixtureParams, flux: torch.Tensor) -> torch.Tensor:
    """Eq. (10): the NLL with every component renormalised on f > 0, per row.

    The density is ``sum_k alpha_k N(f; mu_k, sigma_k) / Phi(mu_k / sigma_k)`` for f >= 0; true
    fluxes below zero (impossible for galaxies) are evaluated at f = 0.

    Returns
    -------
    Tensor, shape (n,)
    """
    return -torch.logsumexp(_component_log_pdf(params, flux.clamp_min(0.0), truncated=True), dim=1)


def supervised_loss(
    params: MixtureParams, flux: torch.Tensor, truncated: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of eq. (8) on rows with ``truncated == False`` and eq. (10) on the others.

    The paper uses eq. (10) for i_AB >= 20.5 (``lumos_ops.constants.BRIGHT_LOSS_IMAG``).

    Parameters
    ----------
    params : MixtureParams
        Tensors of shape (n, K).
    flux : Tensor, shape (n,)
        True fluxes.
    truncated : Tensor of bool, shape (n,)
        Which rows use the truncated loss.
    weight : Tensor, shape (n,), optional
        Importance weights of the rows (``lumos_ops.flux_prior``): the loss is then the weighted
        mean ``sum w_i l_i / sum w_i``, whose minimiser is the posterior under the reference prior.

    Returns
    -------
    Tensor, scalar
    """
    f = torch.where(truncated, flux.clamp_min(0.0), flux)
    nll = -torch.logsumexp(_component_log_pdf(params, f, truncated=truncated), dim=1)
    if weight is None:
        return nll.mean()
    return (weight * nll).sum() / weight.sum().clamp_min(torch.finfo(nll.dtype).tiny)


def pair_overlap_nll(first: MixtureParams, second: MixtureParams, *, truncated: bool = True) -> torch.Tensor:
    """Eq. (11): ``-log integral p1(f) p2(f) df`` over f > 0 for two calibrated mixtures, per row.

    Every component pair (i, j) contributes
    ``alpha_i beta_j N(mu_i - mu_j; 0, sqrt(s_i^2 + s_j^2)) Phi(m_ij / s_ij) / (Phi(mu_i/s_i) Phi(mu_j/s_j))``
    with ``m_ij = (mu_i/s_i^2 + mu_j/s_j^2) s_ij^2`` and ``1/s_ij^2 = 1/s_i^2 + 1/s_j^2``: the
    overlap of the two densities with each component renormalised on f > 0, as in eq. (11).
    With ``truncated=False`` the integral runs over the real line (no Phi factors).

    Parameters
    ----------
    first, second : MixtureParams
        Tensors of shape (n, K1) and (n, K2), calibrated to a common flux unit (e.g. nJy divided by
        a fixed scale).

    Returns
    -------
    Tensor, shape (n,)
    """
    mu1, s1 = first.mu[:, :, None], first.sigma[:, :, None]
    mu2, s2 = second.mu[:, None, :], second.sigma[:, None, :]
    var = s1 * s1 + s2 * s2
    diff = mu1 - mu2
    log_terms = (
        first.log_alpha[:, :, None]
        + second.log_alpha[:, None, :]
        - 0.5 * diff * diff / var
        - 0.5 * torch.log(var)
        - _LOG_SQRT_2PI
    )
    if truncated:
        inv1, inv2 = 1.0 / (s1 * s1), 1.0 / (s2 * s2)
        ratio = (mu1 * inv1 + mu2 * inv2) / torch.sqrt(inv1 + inv2)
        log_terms = (
            log_terms
            + torch.special.log_ndtr(ratio)
            - torch.special.log_ndtr(mu1 / s1)
            - torch.special.log_ndtr(mu2 / s2)
        )
    return -torch.logsumexp(log_terms.flatten(1), dim=1)


class TransferLoss(NamedTuple):
    """Eq. (12) and its two terms (scalars)."""

    total: torch.Tensor
    supervised: torch.Tensor
    pair: torch.Tensor


def transfer_loss(
    sim_params: MixtureParams,
    sim_flux: torch.Tensor,
    sim_truncated: torch.Tensor,
    first: MixtureParams,
    second: MixtureParams,
    *,
    pair_weight: float = 1.0,
    sim_weight: torch.Tensor | None = None,
    pair_truncated: bool = True,
) -> TransferLoss:
    """Eq. (12): supervised loss on simulations plus ``pair_weight`` x the pair loss eq. (11).

    The paper weights both terms equally (``pair_weight = 1``).

    Parameters
    ----------
    sim_params, sim_flux, sim_truncated, sim_weight
        The supervised term: :func:`supervised_loss` (``sim_weight``: importance weights of a
        reference-prior training set, docs/likelihood.md).
    first, second : MixtureParams
        The two observations of each pair (:func:`pair_overlap_nll`).
    pair_truncated : bool, keyword-only
        Renormalise the mixtures on f > 0 in the pair term (posterior networks); False for
        likelihood networks, whose support includes negative fluxes.

    Returns
    -------
    TransferLoss
        ``total`` (what is minimised), ``supervised`` and ``pair``.
    """
    supervised = supervised_loss(sim_params, sim_flux, sim_truncated, sim_weight)
    pair = pair_overlap_nll(first, second, truncated=pair_truncated).mean()
    return TransferLoss(supervised + pair_weight * pair, supervised, pair)
