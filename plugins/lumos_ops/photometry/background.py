"""Local background from a sigma-clipped circular annulus around each target (PAUS, paper §3.2)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning
from scipy.special import erf

from lumos_ops.constants import ANNULUS_RADII
from lumos_ops.exceptions import LumosValueError

__all__ = ["AnnulusBackground", "annulus_background", "annulus_pixel_count"]


@dataclasses.dataclass(frozen=True)
class AnnulusBackground:
    """Background estimate for ``n`` targets.

    Attributes
    ----------
    mean : ndarray, shape (n,)
        Mean of the sigma-clipped annulus pixels (e-/s per pixel); NaN when no pixel is usable.
    variance : ndarray, shape (n,)
        Pixel-noise variance ((e-/s)^2 per pixel): the variance of the clipped annulus pixels
        (ddof=1) divided by that of a unit normal truncated at +-sigma (0.973 for 3 sigma), so that
        clipping does not bias the noise of Gaussian pixels low.
    n_used : ndarray of int, shape (n,)
        Annulus pixels kept after removing NaN and clipped pixels.
    n_total : ndarray of int, shape (n,)
        Pixels whose centre lies in the annulus (whether on the image or not).
    """

    mean: np.ndarray
    variance: np.ndarray
    n_used: np.ndarray
    n_total: np.ndarray

    @property
    def mean_variance(self) -> np.ndarray:
        """Variance of :attr:`mean` itself, ``variance / n_used`` ((e-/s)^2 per pixel)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n_used > 0, self.variance / np.maximum(self.n_used, 1), np.nan)

    @property
    def incomplete(self) -> np.ndarray:
        """Targets with fewer than half of the annulus pixels usable (edge, masks, clipping)."""
        return self.n_used < 0.5 * self.n_total

    def take(self, index: np.ndarray | slice) -> AnnulusBackground:
        """The estimates of a subset of the targets."""
        return AnnulusBackground(
            mean=self.mean[index], variance=self.variance[index], n_used=self.n_used[index], n_total=self.n_total[index]
        )


def _truncated_normal_variance(k: float) -> float:
    """Variance of a unit normal truncated to [-k, k]."""
    density = np.exp(-0.5 * k * k) / np.sqrt(2.0 * np.pi)
    return float(1.0 - 2.0 * k * density / erf(k / np.sqrt(2.0)))


def annulus_pixel_count(*, r_in: float = ANNULUS_RADII[0], r_out: float = ANNULUS_RADII[1]) -> float:
    """Area (pixels) of the annulus ``r_in <= r <= r_out``."""
    return float(np.pi * (r_out**2 - r_in**2))


def annulus_background(
    cutouts: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    *,
    r_in: float = ANNULUS_RADII[0],
    r_out: float = ANNULUS_RADII[1],
    sigma: float = 3.0,
    maxiters: int = 5,
) -> AnnulusBackground:
    """Sigma-clipped mean and variance of the pixels in an annulus centred on each target.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Pixel values (e-/s per pixel); NaN marks masked or off-image pixels, which are ignored.
        The target sits at ``(S//2 + dx, S//2 + dy)``; the annulus needs ``S >= 2 * r_out + 2``
        to be complete.
    dx, dy : array_like, shape (n,)
        Sub-pixel offsets of the targets (pixels).
    r_in, r_out : float, keyword-only
        Annulus radii (pixels) measured from the target to the pixel centres; PAUS uses 30 and 45.
    sigma, maxiters : keyword-only
        Sigma-clipping threshold (standard deviations around the median) and iterations
        (``astropy.stats.sigma_clip``).

    Returns
    -------
    AnnulusBackground
    """
    if cutouts.ndim != 3 or cutouts.shape[1] != cutouts.shape[2]:
        raise LumosValueError(f"cutouts must have shape (n, S, S), got {cutouts.shape}")
    if not 0 <= r_in < r_out:
        raise LumosValueError(f"annulus radii must satisfy 0 <= r_in < r_out, got r_in={r_in}, r_out={r_out}")
    n, size = cutouts.shape[0], cutouts.shape[-1]
    dx = np.broadcast_to(np.asarray(dx, dtype=np.float64), (n,))
    dy = np.broadcast_to(np.asarray(dy, dtype=np.float64), (n,))
    centre = size // 2
    # Pixels that can fall in the annulus for any offset in [-0.5, 0.5]^2, as offsets from the centre.
    offsets = np.arange(-int(np.ceil(r_out + 1)), int(np.ceil(r_out + 1)) + 1)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    r0 = np.hypot(ox, oy)
    keep = (r0 >= r_in - 0.75) & (r0 <= r_out + 0.75)
    ox, oy = ox[keep], oy[keep]
    rows, cols = centre + oy, centre + ox
    inside_grid = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    values = np.full((n, ox.size), np.nan, dtype=np.float64)
    values[:, inside_grid] = cutouts[:, rows[inside_grid], cols[inside_grid]]
    radius = np.hypot(ox[None, :] - dx[:, None], oy[None, :] - dy[:, None])
    in_annulus = (radius >= r_in) & (radius <= r_out)
    values[~in_annulus] = np.nan
    n_total = in_annulus.sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        clipped = sigma_clip(values, sigma=sigma, maxiters=maxiters, axis=1, masked=True, copy=False)
    kept = ~np.ma.getmaskarray(clipped)
    n_used = kept.sum(axis=1)
    filled = np.where(kept, values, 0.0)
    safe_n = np.maximum(n_used, 1)
    mean = filled.sum(axis=1) / safe_n
    sq = np.where(kept, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
    variance = sq / np.maximum(n_used - 1, 1) / _truncated_normal_variance(sigma)
    mean = np.where(n_used > 0, mean, np.nan)
    variance = np.where(n_used > 1, variance, np.nan)
    return AnnulusBackground(mean=mean, variance=variance, n_used=n_used.astype(np.int64), n_total=n_total.astype(np.int64))
