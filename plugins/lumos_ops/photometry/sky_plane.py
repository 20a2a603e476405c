"""A frame's large-scale sky gradient, fitted as a plane and taken out before the local backgrounds.

Every method takes a *constant* local background from an annulus around its target (the classical
methods' 30-45 px annulus of a 94 px cutout, LUMOS's 15-29 px annulus of its 60 px stamp). A sky that
is not flat over that cutout (a frame that is not sky-subtracted, scattered light, vignetting) breaks
that: the annulus variance then holds the gradient, so the classical errors come out too large, and
LUMOS, whose stamps were flat in training, reads a tilted stamp low and wide. On a synthetic frame
with a gradient of 4.7 pixel sigma across a 94 px cutout, faint targets (SNR about 2.5) read -42 %
with LUMOS against -13 % on the same noise without it, LUMOS's errors grew by 89 % and the optimal
sum's by 67 % (``tests/photometry/test_sky_plane.py``); a gradient of 0.38 sigma across the cutout
changed nothing measurable. With the plane taken out the measurements are those of the flat frame.

:func:`fit_sky_plane` fits a plane to the clipped medians of 128 x 128 px blocks of the frame
(every other pixel of each block; smaller blocks, down to 32 px, on a frame too small for six), leaving out blocks more than 3 robust deviations off the
plane (bright sources, a star's halo), twice. ``measure_exposure`` subtracts it, less its value at
the frame centre, when it changes the sky by at least :data:`SKY_PLANE_THRESHOLD` pixel sigma across
one cutout and stands out of the blocks' own scatter by 5 sigma (:func:`remove_sky_plane`): a flat
frame is measured exactly as it was. Structure finer
than the blocks (halos, sky variations within a block) is not a plane and is left to the annulus.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

__all__ = ["SkyPlane", "fit_sky_plane", "remove_sky_plane", "SKY_PLANE_BOX", "SKY_PLANE_THRESHOLD",
           "SKY_PLANE_SIGNIFICANCE"]

log = logging.getLogger(__name__)

SKY_PLANE_BOX: int = 128
"""Side (pixels) of the blocks whose clipped medians the plane is fitted to."""

SKY_PLANE_THRESHOLD: float = 0.5
"""The plane is taken out when it changes the sky by at least this many pixel sigma across
:data:`CUTOUT_WIDTH` pixels (about a seventh of the 3.8 sigma that made LUMOS read faint targets
28 % low) ..."""

SKY_PLANE_SIGNIFICANCE: float = 5.0
"""... and its slopes stand out of the scatter of the block medians by this many sigma (chi-square of
two slopes): on small frames with bright galaxies a plane through 15 blocks of 64 px tilts by 0.2-0.4
pixel sigma across a cutout where the whole frame shows none."""

CUTOUT_WIDTH: int = 94
"""Width (pixels) of the classical methods' cutout, over which their annulus assumes a flat sky."""

_MIN_BLOCKS = 6
_MIN_BOX = 32


@dataclasses.dataclass(frozen=True)
class SkyPlane:
    """``sky(x, y) = level + slope_x (x - xc) + slope_y (y - yc)`` about the frame centre ``(xc, yc)``.

    Attributes
    ----------
    level : float
        Sky at the frame centre (e-/s per pixel).
    slope_x, slope_y : float
        Gradient (e-/s per pixel, per pixel).
    pixel_sigma : float
        Robust pixel noise of the frame less the plane (e-/s).
    n_blocks : int
        Blocks the fit kept.
    significance : float
        ``sqrt(chi2)`` of the two slopes against zero, with their covariance from the scatter of
        the kept blocks about the plane: how far the gradient stands out of the blocks' own
        scatter (sources and sky structure make block medians scatter more than the noise does).
    """

    level: float
    slope_x: float
    slope_y: float
    pixel_sigma: float
    n_blocks: int
    significance: float = float("nan")

    def across(self, width: float = CUTOUT_WIDTH) -> float:
        """Change of the sky across ``width`` pixels along the gradient, in pixel sigma."""
        if not self.pixel_sigma > 0:
            return 0.0
        return float(np.hypot(self.slope_x, self.slope_y) * width / self.pixel_sigma)

    def image(self, shape: tuple[int, int]) -> np.ndarray:
        """The plane less its value at the frame centre, on a ``shape`` (ny, nx) grid (float32)."""
        ny, nx = shape
        x = (np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0) * self.slope_x
        y = (np.arange(ny, dtype=np.float64) - (ny - 1) / 2.0) * self.slope_y
        return (y[:, None] + x[None, :]).astype(np.float32)


def _design(u: np.ndarray, v: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plane's design matrix over the kept blocks and which slopes (x, y) it measures: a slope
    along an axis where the kept blocks lie at one position (a strip of a frame, or all that the
    frame's NaN leave) is not measured, since it would be the intercept again and take the sky level
    for a gradient."""
    measured = np.array([np.unique(axis[keep]).size > 1 for axis in (u, v)])
    columns = [np.ones(int(keep.sum()))] + [axis[keep] for axis, m in zip((u, v), measured) if m]
    return np.column_stack(columns), measured


def fit_sky_plane(data: np.ndarray, *, box: int = SKY_PLANE_BOX) -> SkyPlane | None:
    """The plane through the clipped block medians of ``data`` (e-/s per pixel, NaN masked).

    Blocks are ``box`` px, halved (down to 32 px) until the frame holds 6 of them; None when even
    32 px blocks are too few, or fewer than 6 hold mostly finite pixels.
    """
    from lumos_ops.noise_calibration import _robust_rows, robust_sigma

    data = np.asarray(data)
    ny, nx = data.shape
    while box > _MIN_BOX and (ny // box) * (nx // box) < _MIN_BLOCKS:
        box //= 2
    by, bx = ny // box, nx // box
    if by * bx < _MIN_BLOCKS:
        return None
    # every other pixel of each block: the medians barely change, the cost drops fourfold
    blocks = data[: by * box : 2, : bx * box : 2].reshape(by, box // 2, bx, box // 2).transpose(0, 2, 1, 3)
    values = blocks.reshape(by * bx, -1).astype(np.float64)
    finite = np.isfinite(values).mean(axis=1) > 0.5
    if finite.sum() < _MIN_BLOCKS:
        return None
    med = np.full(by * bx, np.nan)
    med[finite] = _robust_rows(np.where(np.isfinite(values[finite]), values[finite], np.nan))[0]
    yc, xc = np.divmod(np.arange(by * bx), bx)
    u = (xc + 0.5) * box - 0.5 - (nx - 1) / 2.0
    v = (yc + 0.5) * box - 0.5 - (ny - 1) / 2.0
    keep = np.isfinite(med)
    coef, spread = np.zeros(3), 0.0
    for _ in range(3):
        design, measured = _design(u, v, keep)
        fitted = np.linalg.lstsq(design, med[keep], rcond=None)[0]
        coef = np.zeros(3)
        coef[[0, *(1 + np.flatnonzero(measured))]] = fitted
        resid = med - (coef[0] + coef[1] * u + coef[2] * v)
        spread = 1.4826 * float(np.nanmedian(np.abs(resid[keep] - np.nanmedian(resid[keep]))))
        new = np.isfinite(med) & (np.abs(resid) <= 3.0 * spread) if spread > 0 else keep
        if new.sum() < _MIN_BLOCKS or np.array_equal(new, keep):
            break
        keep = new
    design, measured = _design(u, v, keep)
    significance = float("inf")
    if spread > 0:
        cov = spread**2 * np.linalg.pinv(design.T @ design)[1:, 1:]
        slopes = coef[1:][measured]
        significance = float(np.sqrt(max(slopes @ np.linalg.pinv(cov) @ slopes, 0.0)))
    plane = SkyPlane(float(coef[0]), float(coef[1]), float(coef[2]), float("nan"), int(keep.sum()), significance)
    sample = data[::3, ::3].astype(np.float64) - plane.image((ny, nx))[::3, ::3]
    _, sigma = robust_sigma(sample)
    return dataclasses.replace(plane, pixel_sigma=float(sigma))


def remove_sky_plane(data: np.ndarray, *, source: str = "", threshold: float = SKY_PLANE_THRESHOLD,
                     min_significance: float = SKY_PLANE_SIGNIFICANCE) -> np.ndarray:
    """``data`` less its sky plane (less the plane's value at the centre) where the plane changes the
    sky by at least ``threshold`` pixel sigma across a cutout and stands out of the blocks' scatter
    by ``min_significance``; ``data`` itself otherwise."""
    plane = fit_sky_plane(data)
    if plane is None or plane.across() < threshold or not plane.significance >= min_significance:
        return data
    log.info("%s: sky gradient of %.2f pixel sigma across a %d px cutout taken out (a plane over %d blocks)",
             source, plane.across(), CUTOUT_WIDTH, plane.n_blocks)
    return (np.asarray(data, dtype=np.float32) - plane.image(data.shape)).astype(np.float32)
