"""Batched one-dimensional Nelder-Mead minimisation (many independent problems at once).

The update rules, initial simplex and stopping test follow ``scipy.optimize.minimize(method=
"Nelder-Mead")`` (reflection 1, expansion 2, contraction 1/2, shrink 1/2; initial step 5 % of the
start, 0.00025 at zero; stop when both the simplex width <= ``xatol`` and the spread of the values
<= ``fatol``), so a batch gives the scipy answer of every problem, in one vectorised loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["NelderMeadResult", "nelder_mead_1d"]

Objective = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``f(x, index) -> values``: x and values shape (m,), ``index`` the problems being evaluated."""


@dataclasses.dataclass(frozen=True)
class NelderMeadResult:
    """Solutions of ``n`` one-dimensional problems.

    Attributes
    ----------
    x, fun : ndarray, shape (n,)
        Best point and objective value.
    nit : ndarray of int, shape (n,)
        Iterations used.
    converged : ndarray of bool, shape (n,)
        The tolerances were met before ``maxiter``.
    """

    x: np.ndarray
    fun: np.ndarray
    nit: np.ndarray
    converged: np.ndarray


def nelder_mead_1d(
    func: Objective,
    x0: np.ndarray,
    *,
    xatol: float | np.ndarray = 1e-4,
    fatol: float | np.ndarray = 1e-4,
    maxiter: int = 200,
) -> NelderMeadResult:
    """Minimise ``n`` independent scalar functions of one variable with Nelder-Mead.

    Parameters
    ----------
    func : callable
        ``func(x, index)`` returns the objective of problems ``index`` (int array, shape (m,)) at
        ``x`` (shape (m,)); it is only called for problems still running.
    x0 : array_like, shape (n,)
        Starting points.
    xatol, fatol : float or ndarray of shape (n,), keyword-only
        Absolute tolerances on the simplex width and on the objective spread (scipy's defaults).
    maxiter : int, keyword-only
        Maximum iterations per problem.

    Returns
    -------
    NelderMeadResult
    """
    x0 = np.atleast_1d(np.asarray(x0, dtype=np.float64))
    if x0.ndim != 1:
        raise LumosValueError(f"x0 must be 1-D, got shape {x0.shape}")
    if maxiter < 1:
        raise LumosValueError(f"maxiter must be >= 1, got {maxiter}")
    n = x0.size
    xatol = np.broadcast_to(np.asarray(xatol, dtype=np.float64), (n,))
    fatol = np.broadcast_to(np.asarray(fatol, dtype=np.float64), (n,))
    every = np.arange(n)
    # Simplex: best (b) and worst (w) vertices.
    second = np.where(x0 != 0, 1.05 * x0, 0.00025)
    fb, fw = func(x0, every), func(second, every)
    swap = fw < fb
    xb, xw = np.where(swap, second, x0), np.where(swap, x0, second)
    fb, fw = np.where(swap, fw, fb), np.where(swap, fb, fw)
    nit = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    active = every.copy()
    for _ in range(maxiter):
        done = (np.abs(xw[active] - xb[active]) <= xatol[active]) & (np.abs(fw[active] - fb[active]) <= fatol[active])
        converged[active[done]] = True
        active = active[~done]
        if active.size == 0:
            break
        nit[active] += 1
        b, w = xb[active], xw[active]
        f_best, f_worst = fb[active], fw[active]
        xr = 2.0 * b - w
        fr = func(xr, active)
        new_x, new_f = xr.copy(), fr.copy()
        # Expansion where the reflection beat the best point.
        expand = fr < f_best
        shrink = np.zeros(active.size, dtype=bool)
        if expand.any():
            xe = 3.0 * b[expand] - 2.0 * w[expand]
            fe = func(xe, active[expand])
            better = fe < fr[expand]
            new_x[expand] = np.where(better, xe, xr[expand])
            new_f[expand] = np.where(better, fe, fr[expand])
        # In one dimension the reflection never beats the second-best point (the best itself),
        # so every non-expanding step contracts: outside when fr < f_worst, inside otherwise.
        contract = ~expand
        if contract.any():
            outside = contract & (fr < f_worst)
            xc = np.where(outside, 1.5 * b - 0.5 * w, 0.5 * b + 0.5 * w)[contract]
            fc = func(xc, active[contract])
            accept = np.where(outside[contract], fc <= fr[contract], fc < f_worst[contract])
            new_x[contract] = np.where(accept, xc, new_x[contract])
            new_f[contract] = np.where(accept, fc, new_f[contract])
            shrink[contract] = ~accept
        if shrink.any():
            xs = b[shrink] + 0.5 * (w[shrink] - b[shrink])
            new_x[shrink] = xs
            new_f[shrink] = func(xs, active[shrink])
        # Re-order best / worst.
        swap = new_f < f_best
        xb[active] = np.where(swap, new_x, b)
        fb[active] = np.where(swap, new_f, f_best)
        xw[active] = np.where(swap, b, new_x)
        fw[active] = np.where(swap, f_best, new_f)
    else:
        done = (np.abs(xw[active] - xb[active]) <= xatol[active]) & (np.abs(fw[active] - fb[active]) <= fatol[active])
        converged[active[done]] = True
    return NelderMeadResult(x=xb, fun=fb, nit=nit, converged=converged)
