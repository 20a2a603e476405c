"""Magnitude-dependent redshift prior ``p(z | i)`` (BPZ-like, Benitez 2000).

``p(z | m) ~ z**alpha * exp(-(z / z_m)**beta)`` with ``z_m = z0 + k_m * (m - m0)``, ``m`` clipped to
``m_range``. The defaults reproduce the survey simulator's galaxy ``n(z | i_auto)``
(``lumos_ops.sim.population``: ``z**2 exp(-(z / z0)**1.5)``, ``z0 = 0.12 + 0.07 (i - 17)``).
The prior is uniform in template type and E(B-V).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["MagnitudePrior"]


@dataclasses.dataclass(frozen=True)
class MagnitudePrior:
    """Parameters of ``p(z | m)``.

    Attributes
    ----------
    alpha, beta : float
        Shape exponents (> 0).
    z0, k_m, m0 : float
        Characteristic redshift ``z_m = z0 + k_m * (m - m0)`` (m in AB mag).
    m_range : (float, float)
        Magnitudes are clipped to this range before computing ``z_m``.
    """

    alpha: float = 2.0
    beta: float = 1.5
    z0: float = 0.12
    k_m: float = 0.07
    m0: float = 17.0
    m_range: tuple[float, float] = (16.0, 26.0)

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise LumosValueError(f"MagnitudePrior.{name} must be a positive number, got {value!r}")
        low, high = self.m_range
        if not low < high:
            raise LumosValueError(f"MagnitudePrior.m_range must be (low, high) with low < high, got {self.m_range}")
        if self.z0 + self.k_m * (low - self.m0) <= 0 or self.z0 + self.k_m * (high - self.m0) <= 0:
            raise LumosValueError("MagnitudePrior: z0 + k_m * (m - m0) must stay positive over m_range")

    def pdf(self, z: np.ndarray, mag: np.ndarray) -> np.ndarray:
        """Prior on a redshift grid, normalised to unit sum over the grid for each source.

        Parameters
        ----------
        z : ndarray, shape (n_z,)
            Redshift grid (>= 0).
        mag : ndarray, shape (n,)
            i-band AB magnitude of each source; NaN gives the prior of ``m_range[1]`` (faintest).

        Returns
        -------
        ndarray, shape (n, n_z)
        """
        z = np.asarray(z, dtype=np.float64)
        mag = np.asarray(mag, dtype=np.float64)
        m = np.clip(np.where(np.isfinite(mag), mag, self.m_range[1]), *self.m_range)
        zm = self.z0 + self.k_m * (m - self.m0)
        log_p = self.alpha * np.log(np.maximum(z, 1e-6))[None, :] - (z[None, :] / zm[:, None]) ** self.beta
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)
