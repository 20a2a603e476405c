"""Optimal weighted pixel sum (paper §3.3, eq. 5-6, Appendix A).

The weights of eq. (6), ``w_x = (sum m / sum m^2 / (m + b)) / (1 + b_x / m_x)``, with the signal
``m = F R`` (``R`` the unit-flux catalogue model) and the pixel noise written for e-/s images,
``v = max(F R, 0) / t + s^2`` (``s^2`` the sigma-clipped annulus variance, ``t`` the exposure time;
``m + b`` in counts is ``t^2 v``), give the unbiased maximum-SNR linear estimate of the flux on the
grid. Dividing by the model light on the grid, ``sum R``, gives the total flux:

    F = sum(R d' / v) / sum(R^2 / v),   d' = d - b (background-subtracted pixels),

whose error from eq. (5) is ``1 / sqrt(sum R^2 / v)`` (plus the propagated uncertainty of the
background mean, ``var(b) (sum(R / v) / sum(R^2 / v))^2``). The weights depend on the unknown ``F``:
starting from the uniform-noise estimate (``v = s^2``) the estimate is iterated until it changes by
less than ``rtol`` of its error. Masked and off-image pixels are left out of the sums, which keeps
the estimate unbiased (the model tells how much light they held).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.modelfit import FitPixels, fit_pixels, poisson_chi2

if TYPE_CHECKING:
    from lumos_ops.target_context import TargetContext

__all__ = ["optimal_weights", "optimal_photometry", "model_residual", "cached_optimal", "OptimalWeightedSum"]

_GROUP = 128
"""Targets iterated together (grouped by footprint size to keep the padded arrays small)."""


def optimal_weights(model: np.ndarray, flux: np.ndarray, noise_var: np.ndarray, exptime: np.ndarray) -> np.ndarray:
    """Eq. (6) weights on the grid for a given flux (total-flux normalisation ``sum w R = 1``).

    Parameters
    ----------
    model : ndarray, shape (n, K)
        Unit-flux model values of the pixels.
    flux : ndarray, shape (n,)
        Current flux estimate (e-/s).
    noise_var, exptime : ndarray, shape (n,)
        Background pixel variance ((e-/s)^2) and exposure time (s).

    Returns
    -------
    ndarray, shape (n, K)
        Weights ``w`` such that ``F = sum w d'``; proportional to ``m / (m + b)`` as in eq. (6).
    """
    variance = np.maximum(flux[:, None] * model, 0.0) / exptime[:, None] + noise_var[:, None]
    raw = model / variance
    with np.errstate(divide="ignore", invalid="ignore"):
        return raw / np.sum(raw * model, axis=1, keepdims=True)


def optimal_photometry(inputs: PhotometryInputs, *, rtol: float = 1e-3, max_iter: int = 20) -> pd.DataFrame:
    """Optimal weighted sum of every target's pixels.

    Parameters
    ----------
    inputs : PhotometryInputs
        Data and model cutouts.
    rtol : float, keyword-only
        Stop when the flux changes by less than ``rtol`` times its error.
    max_iter : int, keyword-only
        Weight updates; targets still moving are flagged FIT_FAILED.

    Returns
    -------
    DataFrame, one row per target
        ``flux``, ``flux_err`` (e-/s), ``flag``, ``snr`` (eq. 5 at the estimate), ``n_iter``,
        ``background`` (e-/s per pixel), ``model_residual`` (:func:`model_residual`).
    """
    if not rtol > 0:
        raise LumosValueError(f"rtol must be > 0, got {rtol}")
    if max_iter < 1:
        raise LumosValueError(f"max_iter must be >= 1, got {max_iter}")
    pixels = fit_pixels(inputs)
    background = inputs.background
    n = inputs.n
    usable = inputs.measurable & np.isfinite(background.variance) & (background.variance > 0)
    usable &= pixels.model.sum(axis=1) > 0
    idx = np.flatnonzero(usable)
    flux = np.full(n, np.nan)
    flux_err = np.full(n, np.nan)
    n_iter = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    # Targets in groups of similar footprint size (each row's iteration is its own).
    for group, sub in pixels.groups(idx, _GROUP):
        current, error = sub.weighted_estimate(np.broadcast_to(sub.noise_var[:, None], sub.model.shape))
        active = np.arange(group.size)
        done = np.zeros(group.size, dtype=bool)
        iterations = np.zeros(group.size, dtype=np.int64)
        for _ in range(max_iter):
            rows = slice(None) if active.size == group.size else active
            new, new_err = sub.weighted_estimate(sub.variance(current[active], rows, scratch=True), rows)
            iterations[active] += 1
            step_small = np.abs(new - current[active]) <= rtol * new_err
            current[active], error[active] = new, new_err
            done[active[step_small]] = True
            active = active[~step_small]
            if active.size == 0:
                break
        flux[group], flux_err[group] = current, error
        n_iter[group] = iterations
        converged[group] = done
    flags = pixels.flags(inputs)
    flags[inputs.measurable & (~converged | ~np.isfinite(flux))] |= Flag.FIT_FAILED
    flags[flux < 0] |= Flag.NEGATIVE_MODEL
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / flux_err
    return pd.DataFrame(
        {
            "flux": flux,
            "flux_err": flux_err,
            "flag": flags,
            "snr": snr,
            "n_iter": n_iter,
            "background": background.mean,
            "model_residual": model_residual(pixels, flux, snr),
        }
    )


def model_residual(pixels: FitPixels, flux: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """How far a target's pixels depart from its catalogue model, in units of its own light.

    ``(chi2 - (N - 1)) / SNR^2``: the eq. (3) chi-square of the ``N`` fitted pixels at the flux
    ``flux`` (e-/s), less what noise gives, over the source's power ``SNR^2`` (``snr`` of that
    flux). About 0 (± sqrt(2 N) / SNR^2) for a galaxy that is its model; the fraction of its
    light's power that the model misses otherwise. NaN where ``flux`` or ``snr`` is not finite.
    """
    good = np.isfinite(flux) & np.isfinite(snr) & (snr != 0)
    out = np.full(flux.shape, np.nan)
    if good.any():
        rows = np.flatnonzero(good)
        chi2 = poisson_chi2(pixels, flux[rows], rows)
        out[rows] = (chi2 - (pixels.widths[rows] - 1.0)) / snr[rows] ** 2
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimalWeightedSum:
    """Registry method ``optimal``: optimal weighted pixel sum (§3.3, eq. 5-6).

    Parameters
    ----------
    rtol : float
        Convergence of the weight iteration, in units of the flux error.
    max_iter : int
        Weight updates per target.
    """

    rtol: float = 1e-3
    max_iter: int = 20
    name: ClassVar[str] = "optimal"

    def __post_init__(self) -> None:
        if not self.rtol > 0:
            raise LumosValueError(f"rtol must be > 0, got {self.rtol}")
        if self.max_iter < 1:
            raise LumosValueError(f"max_iter must be >= 1, got {self.max_iter}")

    def measure(self, ctx: TargetContext) -> pd.DataFrame:
        """One row per target of ``ctx`` (see :func:`optimal_photometry`)."""
        frame = cached_optimal(ctx, rtol=self.rtol, max_iter=self.max_iter).copy()
        frame["flag"] = frame["flag"].to_numpy(np.int64) | ctx.base_flags
        return frame


def cached_optimal(ctx: TargetContext, *, rtol: float = 1e-3, max_iter: int = 20) -> pd.DataFrame:
    """:func:`optimal_photometry` of ``ctx.photometry_inputs``, computed once per context and settings
    (the ``optimal`` method and LUMOS's ``model_residual`` share it; do not modify the frame)."""
    key = f"_optimal_{rtol!r}_{max_iter}"
    if key not in ctx.__dict__:
        ctx.__dict__[key] = optimal_photometry(ctx.photometry_inputs, rtol=rtol, max_iter=max_iter)
    return ctx.__dict__[key]
