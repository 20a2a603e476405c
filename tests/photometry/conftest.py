"""Fixtures for the classical photometry tests: pixel-integrated Gaussian models (no renderer)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.special import erf


def _gaussian_models(sigma: np.ndarray, dx: np.ndarray, dy: np.ndarray, size: int) -> np.ndarray:
    """Unit-flux circular Gaussians integrated over pixels, centred at (size//2 + dx, size//2 + dy)."""
    edges = np.arange(size + 1, dtype=np.float64) - size // 2 - 0.5
    sigma = np.asarray(sigma, dtype=np.float64)[:, None]
    cx = 0.5 * (1 + erf((edges[None, :] - np.asarray(dx)[:, None]) / (np.sqrt(2) * sigma)))
    cy = 0.5 * (1 + erf((edges[None, :] - np.asarray(dy)[:, None]) / (np.sqrt(2) * sigma)))
    return np.diff(cy, axis=1)[:, :, None] * np.diff(cx, axis=1)[:, None, :]


@pytest.fixture
def gaussian_models() -> Callable[..., np.ndarray]:
    """Factory ``gaussian_models(sigma, dx, dy, size) -> (n, size, size)`` float64 unit-flux images."""
    return _gaussian_models


@pytest.fixture
def noisy_stamps() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Factory of Poisson-noised stamps: returns ``(data, model, flux, dx, dy)`` in e-/s."""

    def make(
        n: int, *, size: int = 96, flux: tuple[float, float] = (5.0, 200.0), sigma: tuple[float, float] = (1.2, 2.5),
        sky: float = 6.0, exptime: float = 90.0, seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
        model = _gaussian_models(rng.uniform(*sigma, n), dx, dy, size)
        true = rng.uniform(*flux, n)
        data = rng.poisson((model * true[:, None, None] + sky) * exptime) / exptime
        return data, model, true, dx, dy

    return make
