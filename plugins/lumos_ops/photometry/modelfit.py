"""Profile fitting of the catalogue model amplitude with a Poisson chi-square (paper §3.1, eq. 3).

For each target, ``chi2(F) = sum_i (f_i - F R_i)^2 / (max(F R_i, 0) / t + s^2)`` is minimised over
the total flux ``F`` with Nelder-Mead (batched over targets, :mod:`lumos_ops.photometry.neldermead`),
where ``f = d - b`` is the background-subtracted image (``b`` the sigma-clipped annulus mean),
``R`` the unit-flux PSF-convolved catalogue model, ``t`` the exposure time and ``s^2`` the
annulus pixel variance. This is eq. (3) written for images in e-/s: the Poisson variance of a pixel
in e-/s is ``counts / t^2``, and ``s^2`` (equal to ``B / t`` for a pure Poisson sky of ``B`` e-/s)
also covers read noise and sky-subtracted images; a global scale of the variance does not move the
minimum. Only the brightest model pixels holding 99 % of the model light enter the sum (the others
carry almost no weight, and leaving them out keeps neighbours far from the target out of the fit). The flux error is the Fisher error at the minimum, ``1 / sqrt(sum R^2 / v)``, plus
the propagated uncertainty of the background mean.

**A minimum that runs away.** The variance grows with ``F``. Where the pixels hold light that the
model does not (a neighbour inside a large footprint, a galaxy far from its catalogue profile) by
much more than the noise, ``chi2`` keeps falling as ``F`` inflates the variance, and its minimum
lies at many times the flux with a tiny error: on the real SDSS frames of ``../shared/realdata``,
up to 3 % of the injected galaxies read 3 to 1,000 times their flux at ``chi2_dof`` in the
thousands, where the linear estimate under the same variance (the ``optimal`` method) reads them
within 70 %. Such a fit measures nothing: a minimum above :data:`RUNAWAY_FACTOR` times the
sky-weighted linear estimate plus :data:`RUNAWAY_SIGMA` of its errors gets NaN flux and error and
the flag FIT_FAILED, which keeps it out of the co-adds and the aperture correction's calibrators.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.neldermead import nelder_mead_1d
from lumos_ops.photometry.quality import footprint_flags, model_footprint

if TYPE_CHECKING:
    from lumos_ops.target_context import TargetContext

__all__ = ["FitPixels", "fit_pixels", "poisson_chi2", "profile_fit_photometry", "ProfileFit", "FIT_LIGHT",
           "RUNAWAY_FACTOR", "RUNAWAY_SIGMA"]

FIT_LIGHT: float = 0.99
"""Fraction of the model light whose pixels (brightest first) enter the fit and the weighted sum."""


RUNAWAY_FACTOR: float = 2.0
RUNAWAY_SIGMA: float = 5.0
"""A chi-square minimum above ``RUNAWAY_FACTOR`` times the sky-weighted linear estimate plus
``RUNAWAY_SIGMA`` of its errors ran away (module docstring): flux and error NaN, flag FIT_FAILED."""

_ALL = slice(None)
"""Index selecting every target."""

_GROUP = 128
"""Targets fitted together (grouped by footprint size to keep the padded arrays small)."""


@dataclasses.dataclass(frozen=True)
class FitPixels:
    """Gathered pixels of ``n`` targets, padded to a common length ``K``.

    Attributes
    ----------
    signal : ndarray, shape (n, K)
        Background-subtracted pixel values ``d - b`` (e-/s); 0 where unused.
    model : ndarray, shape (n, K)
        Unit-flux model ``R`` on the same pixels; 0 where unused (unused pixels drop out of every sum).
    noise_var : ndarray, shape (n,)
        Background pixel variance ``s^2`` ((e-/s)^2).
    background_var : ndarray, shape (n,)
        Variance of the subtracted background mean ((e-/s)^2), ``s^2 / N_annulus``.
    exptime : ndarray, shape (n,)
        Exposure time (s); ``inf`` neglects the source shot noise.
    footprint : ndarray of bool, shape (n, S, S), or None
        The pixels used, on the cutout grid (before removing NaN); None in the groups of
        :meth:`groups` (only the whole set's flags use it).
    """

    signal: np.ndarray
    model: np.ndarray
    noise_var: np.ndarray
    background_var: np.ndarray
    exptime: np.ndarray
    footprint: np.ndarray | None

    def variance(self, flux: np.ndarray, index: np.ndarray | slice = _ALL, *, scratch: bool = False) -> np.ndarray:
        """Per-pixel variance ``max(F R, 0) / t + s^2`` ((e-/s)^2), shape (m, K).

        With ``scratch`` the values are written to a work array of this object that the next such
        call (or :func:`poisson_chi2`) overwrites; otherwise to a new array.
        """
        rows = _row_numbers(index)
        m = self._count(index, rows)
        out = self._scratch(0, m) if scratch else np.empty((m, self.model.shape[1]))
        return self._variance(self._signal_model(flux, index, rows, out), index, flux)

    def _signal_model(self, flux: np.ndarray, index: np.ndarray | slice, rows: np.ndarray | None,
                      out: np.ndarray) -> np.ndarray:
        """``flux[:, None] * model[index]`` written to ``out`` (m, K) (e-/s); ``rows`` from :func:`_row_numbers`."""
        if rows is None:
            return np.multiply(flux[:, None], self.model[index], out=out)
        np.take(self.model, rows, axis=0, out=out, mode="wrap")  # checked by _count; -1 is the last row
        out *= flux[:, None]
        return out

    def _variance(self, signal_model: np.ndarray, index: np.ndarray | slice, flux: np.ndarray) -> np.ndarray:
        """:meth:`variance` from ``F R`` (m, K) of the fluxes ``flux`` (m,), computed in place:
        ``signal_model`` is overwritten.

        Two passes are skipped where they cannot change a value: ``max(F R, 0)`` when every
        ``F >= 0``, ``R >= 0`` and ``s^2 > 0`` (then ``F R`` is 0 or more, or -0 for ``F = -0``,
        which the positive ``s^2`` added later turns into the same sum), and the division by a
        per-row exposure time when all rows share it (divided by that number instead).
        """
        noise_var = self.noise_var[index]
        if not (self._model_nonnegative and np.all(flux >= 0.0) and np.all(noise_var > 0.0)):
            np.maximum(signal_model, 0.0, out=signal_model)
        exptime = self._common_exptime
        if exptime is None:
            signal_model /= self.exptime[index, None]
        else:
            signal_model /= exptime
        signal_model += noise_var[:, None]
        return signal_model

    @functools.cached_property
    def _model_nonnegative(self) -> bool:
        """Every model value is >= 0 (true of :func:`fit_pixels`'s: the footprint keeps R > 0, the rest is 0)."""
        return bool(np.all(self.model >= 0.0))

    @functools.cached_property
    def _common_exptime(self) -> float | None:
        """The exposure time (s) of every row when they share one, else None."""
        exptime = self.exptime
        return float(exptime[0]) if exptime.size and np.all(exptime == exptime[0]) else None

    def _count(self, index: np.ndarray | slice, rows: np.ndarray | None) -> int:
        """Rows selected by ``index``; IndexError for a row number out of range (as numpy indexing)."""
        n = self.model.shape[0]
        if rows is None:
            return len(range(n)[index])
        if rows.size and (rows.max() >= n or rows.min() < -n):
            raise IndexError(f"row index out of range for {n} rows")
        return rows.size

    def _scratch(self, slot: int, m: int) -> np.ndarray:
        """A contiguous float64 (m, K) work array, the start of this object's buffer ``slot`` (0 or 1).

        Reused by every call that takes the slot (fresh arrays of this size cost page faults); its
        values last until the next such call. Only this module's functions use it.
        """
        k = self.model.shape[1]
        buffers = self.__dict__.setdefault("_buffers", {})
        flat = buffers.get(slot)
        if flat is None or flat.size < m * k:
            flat = buffers[slot] = np.empty(max(m, self.model.shape[0]) * k)
        return flat[: m * k].reshape(m, k)

    @functools.cached_property
    def _products(self) -> tuple[np.ndarray, np.ndarray]:
        """``R * R`` and ``R * f`` (n, K), the same in every weighted estimate."""
        return self.model * self.model, self.model * self.signal

    def weighted_estimate(self, variance: np.ndarray, index: np.ndarray | slice = _ALL) -> tuple[np.ndarray, np.ndarray]:
        """Inverse-variance linear flux estimate and its error for given pixel variances, shape (m,).

        The error adds the pixel noise ``1 / sum(R^2 / v)`` and the propagated uncertainty of the
        subtracted background mean, ``var(b) * (sum(R / v) / sum(R^2 / v))^2``.
        """
        model_model, model_signal = self._products
        rows = _row_numbers(index)
        quotient = self._scratch(1, self._count(index, rows))  # each ratio below in turn
        fisher = np.sum(self._over(model_model, variance, index, rows, quotient), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            flux = np.sum(self._over(model_signal, variance, index, rows, quotient), axis=1) / fisher
            leverage = np.sum(self._over(self.model, variance, index, rows, quotient), axis=1) / fisher
            return flux, np.sqrt(1.0 / fisher + self.background_var[index] * leverage**2)

    @staticmethod
    def _over(values: np.ndarray, variance: np.ndarray, index: np.ndarray | slice, rows: np.ndarray | None,
              out: np.ndarray) -> np.ndarray:
        """``values[index] / variance`` (m, K) written to ``out``."""
        if rows is None:
            return np.divide(values[index], variance, out=out)
        np.take(values, rows, axis=0, out=out, mode="wrap")
        out /= variance
        return out

    @functools.cached_property
    def widths(self) -> np.ndarray:
        """Pixels used by each target (``R > 0``), shape (n,)."""
        return (self.model > 0).sum(axis=1)

    def flags(self, inputs: PhotometryInputs) -> np.ndarray:
        """:func:`~lumos_ops.photometry.quality.footprint_flags` of ``footprint`` on the ``inputs`` these
        pixels were selected from (computed once; a copy is returned)."""
        flags = self.__dict__.get("_flags")
        if flags is None:
            if self.footprint is None:
                raise LumosValueError("FitPixels of a group carry no footprint: take the flags of the whole set")
            flags = self.__dict__["_flags"] = footprint_flags(inputs, self.footprint)
        return flags.copy()

    def groups(self, rows: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, FitPixels]]:
        """The ``rows`` in groups of ``size`` with similar pixel counts, each cropped to its widest row.

        Unused pixels (zero model and signal) drop out of every sum, so a group gives its rows'
        numbers with less padding. Yields ``(group_rows, pixels_of_the_group)``.
        """
        widths = self.widths
        order = rows[np.argsort(widths[rows], kind="stable")]
        for lo in range(0, order.size, size):
            group = order[lo : lo + size]
            k = max(int(widths[group].max()), 1)
            yield group, FitPixels(
                signal=self.signal[group, :k],
                model=self.model[group, :k],
                noise_var=self.noise_var[group],
                background_var=self.background_var[group],
                exptime=self.exptime[group],
                footprint=None,
            )


def fit_pixels(inputs: PhotometryInputs, *, light: float = FIT_LIGHT) -> FitPixels:
    """Select the finite pixels among the brightest model pixels holding ``light`` of the model,
    less the pixels of other detected sources (``inputs.exclude``).

    Parameters
    ----------
    inputs : PhotometryInputs
        Cutouts and models of ``n`` targets.
    light : float, keyword-only
        Fraction of the on-grid model light to keep (pixels sorted by model value).

    Returns
    -------
    FitPixels
        Computed once per ``inputs`` and ``light`` (the estimators share it; do not modify it).
    """
    if not 0 < light <= 1:
        raise LumosValueError(f"light must be in (0, 1], got {light}")
    # Shared by the estimators measuring the same inputs (optimal, modelfit, error calibration).
    cache = inputs.__dict__.setdefault("_fit_pixels", {})
    if light not in cache:
        cache[light] = _fit_pixels(inputs, light)
    return cache[light]


def _fit_pixels(inputs: PhotometryInputs, light: float) -> FitPixels:
    footprint = model_footprint(inputs.model, light=light)
    n = inputs.n
    # The footprint pixels by flat index, in row-major order: grouped by target, and inside a
    # target in the order of its pixels; the finite ones are used.
    pixels = np.flatnonzero(footprint)
    data = np.take(inputs.data, pixels)
    finite = np.isfinite(data)
    if inputs.exclude is not None:
        finite &= ~np.take(inputs.exclude, pixels)  # other sources' pixels: left out like masked ones
    if not finite.all():
        pixels, data = pixels[finite], data[finite]
    counts = np.bincount(pixels // max(footprint.shape[1] * footprint.shape[2], 1), minlength=n)
    k = max(int(counts.max(initial=0)), 1)
    # a pixel's rank inside its target is its column: its flat index in the (n, K) arrays is its
    # own position plus its target's offset
    first = np.cumsum(counts) - counts  # the target's first pixel among the selected
    destination = np.arange(pixels.size) + np.repeat(np.arange(n) * k - first, counts)
    background = inputs.background
    signal = np.zeros((n, k))
    model = np.zeros((n, k))
    signal.ravel()[destination] = data - np.repeat(background.mean, counts)
    model.ravel()[destination] = np.take(inputs.model, pixels)
    signal[np.isnan(signal)] = 0.0
    return FitPixels(
        signal=signal,
        model=model,
        noise_var=background.variance,
        background_var=background.mean_variance,
        exptime=inputs.exptime,
        footprint=footprint,
    )


def _row_numbers(index: np.ndarray | slice) -> np.ndarray | None:
    """The rows an array ``index`` selects, in order, as integers (a boolean mask's True rows); None for a slice."""
    if isinstance(index, slice):
        return None
    index = np.asarray(index)
    return np.flatnonzero(index) if index.dtype == bool else index


def poisson_chi2(pixels: FitPixels, flux: np.ndarray, index: np.ndarray | slice = _ALL) -> np.ndarray:
    """Eq. (3) for e-/s images: ``sum (f - F R)^2 / (max(F R, 0)/t + s^2)``, shape (m,).

    The pixel terms are worked out in the two work arrays of ``pixels`` (``FitPixels._scratch``).
    """
    index_array = np.asarray(index) if not isinstance(index, slice) else None
    if index_array is not None and index_array.dtype.kind in "iu" and np.array_equal(index_array, np.arange(pixels.model.shape[0])):
        index = _ALL  # every row in order: views, not copies
    rows = _row_numbers(index)
    m = pixels._count(index, rows)
    signal_model = pixels._signal_model(flux, index, rows, pixels._scratch(0, m))
    residual = pixels._scratch(1, m)
    if rows is None:
        np.subtract(pixels.signal[index], signal_model, out=residual)
    else:
        np.take(pixels.signal, rows, axis=0, out=residual, mode="wrap")
        residual -= signal_model
    residual *= residual
    residual /= pixels._variance(signal_model, index, flux)  # F R is not needed after this
    return np.sum(residual, axis=1)


def profile_fit_photometry(inputs: PhotometryInputs, *, xatol: float = 1e-4, maxiter: int = 200) -> pd.DataFrame:
    """Fit the model amplitude of every target (Nelder-Mead on the Poisson chi-square).

    Parameters
    ----------
    inputs : PhotometryInputs
        Data and model cutouts.
    xatol : float, keyword-only
        Absolute flux tolerance (e-/s), relative to 1 for bright targets (scaled by ``max(1, |F0|)``).
    maxiter : int, keyword-only
        Nelder-Mead iterations per target; targets that do not converge are flagged FIT_FAILED.

    Returns
    -------
    DataFrame, one row per target
        ``flux``, ``flux_err`` (e-/s), ``flag``, ``chi2`` (at the minimum), ``chi2_dof`` (per degree
        of freedom: well above 1 for contaminated stamps), ``n_pixels`` (pixels fitted), ``nit``
        (iterations), ``background`` (e-/s per pixel).
    """
    pixels = fit_pixels(inputs)
    background = inputs.background
    usable = inputs.measurable & np.isfinite(background.mean) & np.isfinite(background.variance) & (background.variance > 0)
    usable &= pixels.model.sum(axis=1) > 0
    idx = np.flatnonzero(usable)
    n = inputs.n
    flux = np.full(n, np.nan)
    flux_err = np.full(n, np.nan)
    chi2 = np.full(n, np.nan)
    nit = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    runaway = np.zeros(n, dtype=bool)
    # Targets sorted by footprint size and fitted in groups, each cropped to its widest footprint.
    for group, sub in pixels.groups(idx, _GROUP):
        start, start_err = sub.weighted_estimate(np.broadcast_to(sub.noise_var[:, None], sub.model.shape))
        result = nelder_mead_1d(
            lambda x, i, sub=sub: poisson_chi2(sub, x, i),
            start,
            xatol=xatol * np.maximum(1.0, np.abs(start)),
            maxiter=maxiter,
        )
        flux[group] = result.x
        chi2[group] = result.fun
        nit[group] = result.nit
        converged[group] = result.converged
        _, flux_err[group] = sub.weighted_estimate(sub.variance(result.x))
        runaway[group] = result.x > RUNAWAY_FACTOR * np.maximum(start, 0.0) + RUNAWAY_SIGMA * start_err
    flux[runaway] = flux_err[runaway] = np.nan
    flags = pixels.flags(inputs)
    failed = inputs.measurable & (~converged | ~np.isfinite(flux))
    flags[failed] |= Flag.FIT_FAILED
    flags[flux < 0] |= Flag.NEGATIVE_MODEL
    n_pixels = pixels.widths.copy()
    return pd.DataFrame(
        {
            "flux": flux,
            "flux_err": flux_err,
            "flag": flags,
            "chi2": chi2,
            "chi2_dof": chi2 / np.maximum(n_pixels - 1, 1),
            "n_pixels": n_pixels,
            "nit": nit,
            "background": background.mean,
        }
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileFit:
    """Registry method ``modelfit``: Poisson chi-square profile fit of the amplitude (§3.1, eq. 3).

    Parameters
    ----------
    xatol : float
        Relative flux tolerance of Nelder-Mead.
    maxiter : int
        Nelder-Mead iterations per target.
    """

    xatol: float = 1e-4
    maxiter: int = 200
    name: ClassVar[str] = "modelfit"

    def __post_init__(self) -> None:
        if not self.xatol > 0:
            raise LumosValueError(f"xatol must be > 0, got {self.xatol}")
        if self.maxiter < 1:
            raise LumosValueError(f"maxiter must be >= 1, got {self.maxiter}")

    def measure(self, ctx: TargetContext) -> pd.DataFrame:
        """One row per target of ``ctx`` (see :func:`profile_fit_photometry`)."""
        frame = profile_fit_photometry(ctx.photometry_inputs, xatol=self.xatol, maxiter=self.maxiter)
        frame["flag"] = frame["flag"].to_numpy(np.int64) | ctx.base_flags
        return frame
