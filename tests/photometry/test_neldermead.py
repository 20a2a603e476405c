"""Batched 1-D Nelder-Mead against scipy.optimize.minimize(method="Nelder-Mead")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry.neldermead import nelder_mead_1d


def test_matches_scipy_on_non_quadratic_problems() -> None:
    rng = np.random.default_rng(3)
    n = 12
    centre, scale, x0 = rng.uniform(-100, 100, n), rng.uniform(0.1, 5, n), rng.uniform(-50, 50, n)
    x0[0] = 0.0  # scipy's special initial step at zero

    def f(x: np.ndarray, i: np.ndarray) -> np.ndarray:
        return scale[i] * (x - centre[i]) ** 2 + np.abs(x - centre[i]) ** 1.5 + np.sin(x)

    result = nelder_mead_1d(f, x0)
    assert result.converged.all()
    for i in range(n):
        reference = minimize(lambda v, i=i: float(f(v, np.array([i]))[0]), x0[i], method="Nelder-Mead")
        assert result.x[i] == pytest.approx(reference.x[0], rel=1e-12, abs=1e-12)
        assert result.fun[i] == pytest.approx(reference.fun, rel=1e-12, abs=1e-12)


def test_only_running_problems_are_evaluated_and_maxiter_reports_failure() -> None:
    calls: list[int] = []

    def f(x: np.ndarray, i: np.ndarray) -> np.ndarray:
        calls.append(i.size)
        return (x - np.array([1.0, 1e6])[i]) ** 2

    result = nelder_mead_1d(f, np.array([0.9, 0.0]), maxiter=20)
    assert result.converged.tolist() == [True, False]
    assert result.x[0] == pytest.approx(1.0, abs=1e-3)
    assert min(calls) == 1


def test_rejects_bad_arguments() -> None:
    with pytest.raises(LumosValueError, match="maxiter"):
        nelder_mead_1d(lambda x, i: x**2, np.zeros(2), maxiter=0)
