"""Image defects of a PAUCam-like CCD, applied to images in electrons.

Every function works on a float64 image of shape (ny, nx) holding electrons accumulated during
the exposure (not e-/s) and either returns a new array or modifies ``image`` in place, as stated.
Camera features (scattered-light geometry, bad columns) are functions of (seed, band, epoch, CCD)
only, so they repeat from exposure to exposure like the real ones.
"""

from __future__ import annotations

import math

import numpy as np

from lumos_ops.constants import CCD_SHAPE, NB_BANDS

__all__ = [
    "scattered_light",
    "read_noise",
    "add_cosmic_rays",
    "bad_columns",
    "add_crosstalk",
    "bleed_saturated",
    "paste_stamps",
]

_CR_RATE = 2.0e-7
"""Cosmic-ray hits per pixel per second (about 5 per cm^2 per minute for 15 um pixels)."""


def _camera_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 7, *keys]))


def scattered_light(
    shape: tuple[int, int], *, band: str, epoch: int, ccd: int, seed: int, exposure_rng: np.random.Generator
) -> np.ndarray:
    """Smooth scattered-light pattern as a fraction of the sky level.

    The geometry (which CCD edge glows, the direction of the gradient, an arc from a reflection
    off the filter edge) is fixed per (band, epoch, CCD); epoch 0, before the baffles, is about
    three times stronger. The amplitude varies by +-20 % from exposure to exposure.

    The pattern lives on the physical PAUCam CCD (``CCD_SHAPE`` pixels): a smaller simulated CCD is
    the central ``shape`` window of it, so the background gradient per pixel stays realistic
    instead of growing as the CCD shrinks.

    Returns
    -------
    ndarray, shape (ny, nx), float64
        Non-negative fraction to multiply by the sky level (typically 0.05-0.6 at the edges).
    """
    ny, nx = shape
    full_ny, full_nx = CCD_SHAPE
    rng = _camera_rng(seed, NB_BANDS.index(band), epoch, ccd)
    strength = (0.45 if epoch == 0 else 0.15) * rng.uniform(0.5, 1.0)
    strength *= math.exp(0.2 * exposure_rng.normal())
    y = (np.arange(ny, dtype=np.float64) + 0.5 + (full_ny - ny) / 2) / full_ny
    x = (np.arange(nx, dtype=np.float64) + 0.5 + (full_nx - nx) / 2) / full_nx
    length = rng.uniform(0.08, 0.2)
    edge = int(rng.integers(4))
    coordinate = (x, 1.0 - x, y, 1.0 - y)[edge]
    glow = np.exp(-coordinate / length)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    gradient_x = 0.3 * math.cos(theta) * (x - 0.5)
    gradient_y = 0.3 * math.sin(theta) * (y - 0.5)
    cx, cy = rng.uniform(-0.3, 1.3, size=2)
    radius, width = rng.uniform(0.5, 0.9), rng.uniform(0.05, 0.12)
    r = np.hypot(x[None, :] - cx, (y[:, None] - cy) * full_ny / max(full_nx, full_ny) * 2.0)
    arc = 0.5 * np.exp(-0.5 * ((r - radius) / width) ** 2)
    if edge < 2:
        pattern = glow[None, :] + arc
    else:
        pattern = glow[:, None] + arc
    pattern = pattern + gradient_x[None, :] + gradient_y[:, None] + 0.3
    return strength * np.clip(pattern, 0.0, None)


def read_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    sigma: float,
    white: bool = True,
    heavy_tails: bool = True,
    banding: bool = True,
) -> np.ndarray:
    """Read noise (e-) with Student-t tails, per-amplifier offsets and row/column banding.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
    sigma : float, keyword-only
        Read noise (e-): standard deviation of the white part, scale of the banding.
    white : bool, keyword-only
        Include the pixel-to-pixel (white) noise.
    heavy_tails : bool, keyword-only
        Student-t (5 degrees of freedom, rescaled to ``sigma``) instead of Gaussian.
    banding : bool, keyword-only
        Add row offsets (0.3 sigma, plus a slow 0.2 sigma ripple), column offsets (sigma/4) and an offset
        between the two amplifiers (left/right halves).

    Returns
    -------
    ndarray, shape (ny, nx), float64
    """
    ny, nx = shape
    if not white:
        noise = np.zeros(shape)
    elif heavy_tails:
        noise = rng.standard_t(5.0, size=shape) * (sigma / math.sqrt(5.0 / 3.0))
    else:
        noise = rng.normal(0.0, sigma, size=shape)
    if banding:
        rows = rng.normal(0.0, 0.3 * sigma, size=ny)
        rows += 0.2 * sigma * np.sin(2.0 * math.pi * np.arange(ny) / rng.uniform(40.0, 200.0) + rng.uniform(0, 6.3))
        cols = rng.normal(0.0, 0.25 * sigma, size=nx)
        amp = np.where(np.arange(nx) < nx // 2, 0.0, rng.normal(0.0, sigma))
        noise += rows[:, None] + (cols + amp)[None, :]
    return noise


def add_cosmic_rays(rng: np.random.Generator, image: np.ndarray, *, exptime: float) -> int:
    """Add cosmic-ray hits and tracks (in place); returns their number.

    Hits are Poisson with :data:`_CR_RATE` per pixel per second; each deposits 300-5000 e- per
    pixel along a straight track 1-20 pixels long (deep-depleted CCDs show long worms).
    """
    ny, nx = image.shape
    n = int(rng.poisson(_CR_RATE * exptime * ny * nx))
    for _ in range(n):
        length = int(rng.integers(1, 21))
        angle = rng.uniform(0.0, math.pi)
        x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
        t = np.arange(length)
        xs = np.floor(x0 + t * math.cos(angle)).astype(np.int64)
        ys = np.floor(y0 + t * math.sin(angle)).astype(np.int64)
        ok = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
        image[ys[ok], xs[ok]] += rng.uniform(300.0, 5000.0, size=int(ok.sum()))
    return n


def bad_columns(shape: tuple[int, int], *, ccd: int, seed: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Fixed bad columns of a CCD.

    Returns
    -------
    masked : list of (column, first_row, end_row)
        Dead column segments, written as NaN.
    hot : list of int
        Hot columns (extra dark current, about 1.5 e-/s per pixel).
    """
    ny, nx = shape
    rng = _camera_rng(seed, 99, ccd)
    n_masked = 1 + int(rng.integers(2))
    masked = []
    for _ in range(n_masked):
        column = int(rng.integers(0, nx))
        start = int(rng.integers(0, ny // 2))
        masked.append((column, start, int(min(ny, start + rng.integers(ny // 4, ny)))))
    hot = [int(rng.integers(0, nx))]
    return masked, hot


def add_crosstalk(image: np.ndarray, *, coefficient: float, threshold: float) -> None:
    """Crosstalk between the two amplifiers (left/right halves read from opposite ends), in place.

    Every pixel above ``threshold`` e- leaks ``coefficient * (value - threshold)`` into the
    mirror pixel of the other amplifier, producing ghosts of bright stars and cosmic rays.
    """
    ny, nx = image.shape
    half = nx // 2
    bright = np.clip(image - threshold, 0.0, None)
    left = bright[:, :half]
    right = bright[:, nx - half :]
    image[:, nx - half :] += coefficient * left[:, ::-1]
    image[:, :half] += coefficient * right[:, ::-1]


def bleed_saturated(image: np.ndarray, *, full_well: float) -> np.ndarray:
    """Bleed charge above the full well along columns (in place).

    Each column's excess charge fills the pixels above and below its saturated run up to the
    full well, alternating directions, until the excess is used (charge reaching the CCD edge
    is lost).

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        Pixels at the full well (saturated or bled into).
    """
    ny, _ = image.shape
    over = image > full_well
    for column in np.flatnonzero(over.any(axis=0)):
        values = image[:, column]
        hot = np.flatnonzero(values > full_well)
        excess = float((values[hot] - full_well).sum())
        values[hot] = full_well
        low, high = int(hot.min()), int(hot.max())
        while excess > 0 and (low > 0 or high < ny - 1):
            for step in (-1, 1):
                index = low - 1 if step < 0 else high + 1
                if not 0 <= index < ny or excess <= 0:
                    continue
                room = full_well - values[index]
                if room > 0:
                    fill = min(room, excess)
                    values[index] += fill
                    excess -= fill
                if step < 0:
                    low = index
                else:
                    high = index
        image[:, column] = values
    return image >= full_well


def paste_stamps(image: np.ndarray, stamps: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Add rendered stamps to ``image`` (in place), clipping at the image edges.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
    stamps : ndarray, shape (n, S, S)
        Stamp ``i`` has its source at stamp pixel ``(S//2 + dx, S//2 + dy)`` with
        ``dx = x - floor(x + 0.5)`` (the ARCHITECTURE stamp convention).
    x, y : ndarray, shape (n,)
        Source positions on ``image`` (pixels, x = column).
    """
    ny, nx = image.shape
    size = stamps.shape[-1]
    ix = np.floor(np.asarray(x) + 0.5).astype(np.int64) - size // 2
    iy = np.floor(np.asarray(y) + 0.5).astype(np.int64) - size // 2
    for k in range(len(stamps)):
        x0, y0 = int(ix[k]), int(iy[k])
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + size, nx), min(y0 + size, ny)
        if xa >= xb or ya >= yb:
            continue
        image[ya:yb, xa:xb] += stamps[k, ya - y0 : yb - y0, xa - x0 : xb - x0]
