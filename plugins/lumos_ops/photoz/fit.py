"""Template-fitting photometric redshifts on narrow-band fluxes (a simplified BCNZ2).

For every source and grid point (type, E(B-V), z) the model amplitude ``a >= 0`` minimising
``chi2 = sum_b w_b (f_b - a T_b)**2`` (``w_b = 1 / sigma_b**2``, 0 for missing bands) is solved
analytically: ``a = max(sum w f T / sum w T**2, 0)`` and ``chi2 = sum w f**2 - a * sum w f T``.
The redshift posterior is ``p(z) ~ prior(z | i) * sum_{type, E(B-V)} exp(-chi2 / 2)``. Sources are
processed in chunks with two matrix products per chunk, so thousands of 40-band sources take
seconds on one CPU core.

Outputs per source: posterior mode (refined with a Gaussian fit through the peak and its
neighbours) and mean, median, ``sigma68 = (q84 - q16) / 2``, ``ODDS`` (posterior mass within
``z_mode +- odds_window (1 + z_mode)``), the minimum chi2 with its template, E(B-V), redshift and
i-band magnitude (from the amplitude), and ``qz = chi2 / (n_bands - 3) * (q99 - q01) / ODDS``
(the PAUS quality cut of Eriksen et al. 2019; smaller is better).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.exceptions import LumosValueError
from lumos_ops.photoz.prior import MagnitudePrior
from lumos_ops.photoz.templates import TemplateGrid, build_template_grid

__all__ = ["PhotozConfig", "PhotozResult", "fit_photoz", "RESULT_COLUMNS"]

RESULT_COLUMNS: tuple[str, ...] = (
    "z_mode", "z_mean", "z_median", "z_sigma68", "z_q16", "z_q84", "odds", "qz",
    "chi2", "n_bands", "n_clipped", "sed_type", "ebv", "z_best", "i_fit",
)
"""Per-source output columns of :meth:`PhotozResult.to_frame` (after ``ref_id``)."""


@dataclasses.dataclass(frozen=True)
class PhotozConfig:
    """Options of :func:`fit_photoz`.

    Attributes
    ----------
    odds_window : float
        Half-width of the ODDS window in units of ``1 + z_mode`` (default 0.01).
    min_bands : int
        Sources with fewer usable bands get NaN redshifts (default 3).
    error_floor : float
        Fractional error added in quadrature to every flux error (calibration floor; default 0).
    chunk_size : int
        Sources per matrix product (memory ~ 2 x chunk_size x n_models x 8 bytes; default 16).
    clip_sigma : float or None
        Outlier rejection (off by default): after a fit, the band with the largest
        ``|f - a T| / sigma`` at the minimum chi2 is dropped if that exceeds ``clip_sigma``, and
        the source is refitted; repeated up to ``max_clipped`` times, never below ``min_bands``.
    max_clipped : int
        Most bands dropped per source (default 3).
    """

    odds_window: float = 0.01
    min_bands: int = 3
    error_floor: float = 0.0
    chunk_size: int = 16
    clip_sigma: float | None = None
    max_clipped: int = 3

    def __post_init__(self) -> None:
        if not (np.isfinite(self.odds_window) and self.odds_window > 0):
            raise LumosValueError(f"PhotozConfig.odds_window must be > 0, got {self.odds_window!r}")
        if int(self.min_bands) != self.min_bands or self.min_bands < 1:
            raise LumosValueError(f"PhotozConfig.min_bands must be an integer >= 1, got {self.min_bands!r}")
        if not (np.isfinite(self.error_floor) and self.error_floor >= 0):
            raise LumosValueError(f"PhotozConfig.error_floor must be >= 0, got {self.error_floor!r}")
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise LumosValueError(f"PhotozConfig.chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if self.clip_sigma is not None and not (np.isfinite(self.clip_sigma) and self.clip_sigma > 0):
            raise LumosValueError(f"PhotozConfig.clip_sigma must be > 0 or None, got {self.clip_sigma!r}")
        if int(self.max_clipped) != self.max_clipped or self.max_clipped < 0:
            raise LumosValueError(f"PhotozConfig.max_clipped must be an integer >= 0, got {self.max_clipped!r}")


@dataclasses.dataclass(frozen=True)
class PhotozResult:
    """Photo-z estimates; every array has shape (n,) unless stated.

    Attributes
    ----------
    z_mode, z_mean, z_median : ndarray
        Posterior mode, mean and median.
    z_sigma68, z_q16, z_q84 : ndarray
        ``(q84 - q16) / 2`` and the 16 / 84 % posterior quantiles.
    odds : ndarray
        Posterior mass within ``z_mode +- odds_window * (1 + z_mode)`` (0-1, larger is better).
    qz : ndarray
        ``chi2 / (n_bands - 3) * (q99 - q01) / odds`` (smaller is better; NaN with <= 3 bands).
    chi2 : ndarray
        Minimum chi2 over the grid.
    n_bands : ndarray of int
        Bands used (finite flux and positive error, minus clipped ones).
    n_clipped : ndarray of int
        Bands dropped by the outlier rejection (``PhotozConfig.clip_sigma``).
    sed_type, ebv, z_best : ndarray
        Template type, E(B-V) (mag) and redshift of the minimum chi2.
    i_fit : ndarray
        i-band AB magnitude implied by the best-fit amplitude.
    z_grid : ndarray, shape (n_z,)
    pdf : ndarray, shape (n, n_z), or None
        Posterior (unit sum per source) when requested.
    """

    z_mode: np.ndarray
    z_mean: np.ndarray
    z_median: np.ndarray
    z_sigma68: np.ndarray
    z_q16: np.ndarray
    z_q84: np.ndarray
    odds: np.ndarray
    qz: np.ndarray
    chi2: np.ndarray
    n_bands: np.ndarray
    n_clipped: np.ndarray
    sed_type: np.ndarray
    ebv: np.ndarray
    z_best: np.ndarray
    i_fit: np.ndarray
    z_grid: np.ndarray
    pdf: np.ndarray | None = None

    def to_frame(self, ref_id: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        """One row per source: ``ref_id`` (if given) and :data:`RESULT_COLUMNS`."""
        columns = {name: getattr(self, name) for name in RESULT_COLUMNS}
        frame = pd.DataFrame(columns)
        if ref_id is not None:
            ref = np.asarray(ref_id)
            if ref.shape != (len(frame),):
                raise LumosValueError(f"ref_id must have shape ({len(frame)},), got {ref.shape}")
            frame.insert(0, "ref_id", ref)
        return frame


def _check_inputs(flux: np.ndarray, flux_err: np.ndarray, n_bands: int) -> tuple[np.ndarray, np.ndarray]:
    flux = np.asarray(flux, dtype=np.float64)
    flux_err = np.asarray(flux_err, dtype=np.float64)
    if flux.ndim != 2 or flux.shape[1] != n_bands:
        raise LumosValueError(f"flux must have shape (n_sources, {n_bands}) matching the bands, got {flux.shape}")
    if flux_err.shape != flux.shape:
        raise LumosValueError(f"flux_err must have the shape of flux {flux.shape}, got {flux_err.shape}")
    bad = np.isfinite(flux) & ~(np.isfinite(flux_err) & (flux_err > 0))
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise LumosValueError(
            f"flux_err[{row}, {col}] = {flux_err[row, col]!r} must be finite and > 0 where the flux is "
            "finite; set the flux to NaN to mark the band missing"
        )
    return flux, flux_err


def _quantiles(cdf: np.ndarray, z: np.ndarray, probs: Sequence[float]) -> list[np.ndarray]:
    """Linear interpolation of ``cdf`` (n, n_z), monotone along z, at each probability."""
    out = []
    rows = np.arange(cdf.shape[0])
    for q in probs:
        hi = np.clip((cdf < q).sum(axis=1), 1, len(z) - 1)
        c0, c1 = cdf[rows, hi - 1], cdf[rows, hi]
        frac = np.clip((q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0, 1.0)
        out.append(z[hi - 1] + frac * (z[hi] - z[hi - 1]))
    return out


def _refined_mode(post: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Peak of a Gaussian through the largest posterior value and its two neighbours."""
    rows = np.arange(post.shape[0])
    k = np.clip(np.argmax(post, axis=1), 1, len(z) - 2)
    peak = np.argmax(post, axis=1)
    log_p = np.log(np.maximum(post[rows[:, None], k[:, None] + np.array([-1, 0, 1])], 1e-300))
    curvature = log_p[:, 0] - 2.0 * log_p[:, 1] + log_p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature < 0, 0.5 * (log_p[:, 0] - log_p[:, 2]) / curvature, 0.0)
    step = z[1] - z[0] if len(z) > 1 else 0.0
    inner = (peak == k)
    return np.where(inner, z[k] + np.clip(shift, -0.5, 0.5) * step, z[peak])


def _chi2_grid(
    f: np.ndarray, w: np.ndarray, models_t: np.ndarray, models2_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """chi2 and amplitude (both (m, n_models)) and the argmin per source, amplitudes clamped at 0."""
    num = (f * w) @ models_t
    den = w @ models2_t
    np.maximum(den, np.finfo(np.float64).tiny, out=den)
    amp = np.divide(num, den, out=den)
    np.maximum(amp, 0.0, out=amp)
    chi2 = np.multiply(amp, num, out=num)
    np.subtract((f**2 * w).sum(axis=1)[:, None], chi2, out=chi2)
    np.maximum(chi2, 0.0, out=chi2)
    return chi2, amp, np.argmin(chi2, axis=1)


def _prior_magnitudes(i_fit: np.ndarray, i_mag: np.ndarray | None) -> np.ndarray:
    """Magnitudes (AB) for the prior: ``i_mag`` where finite, else the fitted ``i_fit``."""
    if i_mag is None:
        return i_fit
    return np.where(np.isfinite(i_mag), i_mag, i_fit)


def fit_photoz(
    flux: np.ndarray,
    flux_err: np.ndarray,
    *,
    grid: TemplateGrid | None = None,
    bands: Sequence[str] | None = None,
    i_mag: np.ndarray | None = None,
    prior: MagnitudePrior | None = None,
    config: PhotozConfig | None = None,
    return_pdf: bool = False,
) -> PhotozResult:
    """Fit the template grid to narrow-band fluxes.

    Parameters
    ----------
    flux, flux_err : array_like, shape (n, n_bands)
        Flux densities and their 1-sigma errors (nJy). NaN flux marks a missing band; where the
        flux is finite the error must be finite and > 0.
    grid : TemplateGrid, optional, keyword-only
        Template grid (default :func:`build_template_grid` on all 40 bands).
    bands : sequence of str, optional, keyword-only
        Band of each flux column; the grid is restricted to them (default: the grid's bands).
    i_mag : array_like, shape (n,), optional, keyword-only
        i-band AB magnitude of each source for the prior; without it, or where it is NaN, the prior
        uses the fitted ``i_fit``.
    prior : MagnitudePrior, optional, keyword-only
        Redshift prior; ``None`` (default) is a flat prior (maximum likelihood).
    config : PhotozConfig, optional, keyword-only
    return_pdf : bool, keyword-only
        Keep the posterior on the grid, shape (n, n_z).

    Returns
    -------
    PhotozResult
    """
    config = config or PhotozConfig()
    grid = grid or build_template_grid()
    if bands is not None and tuple(bands) != grid.bands:
        grid = grid.select_bands(bands)
    flux, flux_err = _check_inputs(flux, flux_err, len(grid.bands))
    n = flux.shape[0]
    if i_mag is not None:
        i_mag = np.asarray(i_mag, dtype=np.float64)
        if i_mag.shape != (n,):
            raise LumosValueError(f"i_mag must have shape ({n},), got {i_mag.shape}")

    valid = np.isfinite(flux)
    err = np.sqrt(np.where(valid, flux_err, 1.0) ** 2 + (config.error_floor * np.where(valid, flux, 0.0)) ** 2)
    weight = np.where(valid, 1.0 / err**2, 0.0)
    f = np.where(valid, flux, 0.0)
    n_bands = valid.sum(axis=1)

    models = grid.flat_models()
    models_t = np.ascontiguousarray(models.T)
    models2_t = np.ascontiguousarray((models**2).T)
    n_te = len(grid.sed_type) * len(grid.ebv)
    n_z = len(grid.z)
    z = grid.z

    out = {name: np.full(n, np.nan) for name in RESULT_COLUMNS if name not in ("n_bands", "n_clipped")}
    n_clipped = np.zeros(n, dtype=np.int64)
    pdf = np.full((n, n_z), np.nan) if return_pdf else None
    fitted = np.flatnonzero(n_bands >= config.min_bands)
    for start in range(0, len(fitted), config.chunk_size):
        rows = fitted[start : start + config.chunk_size]
        w, fc = weight[rows].copy(), f[rows]
        chi2, amp, best = _chi2_grid(fc, w, models_t, models2_t)
        if config.clip_sigma is not None:
            for _ in range(config.max_clipped):
                chunk = np.arange(len(rows))
                resid = np.abs(fc - amp[chunk, best][:, None] * models[best]) * np.sqrt(w)
                worst = np.argmax(resid, axis=1)
                drop = (resid[chunk, worst] > config.clip_sigma) & ((w > 0).sum(axis=1) > config.min_bands)
                if not drop.any():
                    break
                w[chunk[drop], worst[drop]] = 0.0
                n_clipped[rows[drop]] += 1
                chi2, amp, best = _chi2_grid(fc, w, models_t, models2_t)
        chi2_min = chi2[np.arange(len(rows)), best]
        amp_best = amp[np.arange(len(rows)), best]
        chi2 -= chi2_min[:, None]
        chi2 *= -0.5
        like = np.exp(chi2, out=chi2).reshape(len(rows), n_te, n_z).sum(axis=1)
        i_fit = np.where(amp_best > 0, NJY_ZEROPOINT - 2.5 * np.log10(np.where(amp_best > 0, amp_best, 1.0)), np.nan)
        if prior is not None:
            like = like * prior.pdf(z, _prior_magnitudes(i_fit, None if i_mag is None else i_mag[rows]))
        post = like / like.sum(axis=1, keepdims=True)
        cdf = np.cumsum(post, axis=1) - 0.5 * post
        q01, q16, q50, q84, q99 = _quantiles(cdf, z, (0.01, 0.16, 0.5, 0.84, 0.99))
        mode = _refined_mode(post, z)
        odds = (post * (np.abs(z[None, :] - mode[:, None]) <= config.odds_window * (1.0 + mode[:, None]))).sum(axis=1)
        t_idx, e_idx, z_idx = np.unravel_index(best, grid.models.shape[:3])
        with np.errstate(divide="ignore", invalid="ignore"):
            used = n_bands[rows] - n_clipped[rows]
            qz = np.where(used > 3, chi2_min / (used - 3) * (q99 - q01) / odds, np.nan)
        for name, values in (
            ("z_mode", mode), ("z_mean", post @ z), ("z_median", q50), ("z_sigma68", 0.5 * (q84 - q16)),
            ("z_q16", q16), ("z_q84", q84), ("odds", odds), ("qz", qz), ("chi2", chi2_min),
            ("sed_type", grid.sed_type[t_idx]), ("ebv", grid.ebv[e_idx]), ("z_best", z[z_idx]), ("i_fit", i_fit),
        ):
            out[name][rows] = values
        if pdf is not None:
            pdf[rows] = post
    return PhotozResult(
        **out, n_bands=(n_bands - n_clipped).astype(np.int64), n_clipped=n_clipped, z_grid=np.asarray(z), pdf=pdf
    )
