"""How much of a fitted neighbour's light a blended target keeps, measured on the exposure's own isolated targets.

A blended target is fitted jointly with its catalogued neighbours (:mod:`lumos_ops.photometry.neighbours`):
their models, scaled by the fitted amplitudes, are taken out of its stamps. A neighbour's model is its
catalogue profile through the exposure's PSF model; where the real light departs from it (a PSF whose
wings are not the model's Moffat, a galaxy that is not its Sérsic profile), the subtraction leaves
some of the neighbour's light in the target's stamps, or takes out too much. The target then reads

    f = f_true + κ c,

``c`` the neighbour's fitted light under the target's matched filter (``neighbour_light``) and ``κ`` a
fraction set by how the exposure's galaxies depart from their models at a few pixels from their
centres. GalSim galaxies drawn with a Kolmogorov PSF and measured through the Moffat model read
``κ`` of -2.6 % to -3.6 % noiselessly on the real frames and the simulated CCDs; drawn with the
model's own Moffat, 0 (``reports/lumos/crosstalk``).

**The measurement: synthetic blends of real targets.** An isolated target bright enough to calibrate
the aperture correction is a neighbour whose light is all there is in its stamp. A zero-flux target
is put beside it (its own model, shifted by each of :data:`OFFSETS_PX`: 3 to 8 px in six
directions), and the two are fitted jointly as a blend is (least squares of the two unit models
on the stamp's usable pixels less its masked-annulus sky), with a constant and two slopes: an
error of the sky estimate of 0.05 pixel sigma, common on real frames, moves the zero-flux target
as much as the leak of a calibrator at SNR 40 does, and it is every target's background error,
not the neighbour's. These are fitted over the whole stamp, mostly sky, and leave the leak as it
is (to 2 % of it for Kolmogorov galaxies through the Moffat model). The zero-flux target's amplitude
``a_f`` is the leak; its neighbour light is ``c_f = a_j G_fj / G_ff`` (the joint amplitude of the
real target times the models' overlap over the fake's norm, the definition of ``neighbour_light``).
:func:`leak_sums` returns, per target, ``Σ a_f c_f / v_f`` and ``Σ c_f² / v_f`` over the offsets,
less the part the two amplitudes' correlated noise adds (``v_f`` the fake's variance, both under
the frame's measured noise correlation); :func:`fit_leak` pools them over the exposure's
calibrators into the least-squares ``κ = Σ a_f c_f / v_f / Σ c_f² / v_f``, the calibrators
beyond :data:`CLIP` of their noise from the median left out, with a bootstrap error over the
calibrators.

**What it replaces.** Without a measurement, the aperture correction's factor ``k`` models the
leak as ``κ = -(1 - 1/k)``: the fit took out ``k`` times the neighbour's light
(docs/neighbours.md, "The exposure's flux unit"). That models how the neighbour's total flux is
read, not the light at the target's position, which is what ``κ`` measures.
:func:`lumos_ops.flux_correction.apply_flux_correction` gives back ``-κ c`` before dividing by ``k``.

**What it leaves out.** The target's own departure from its model is read by its neighbours'
models too, and given back through the fit: noiselessly the target reads ``k f + κ (c - ρ² k f)``,
``ρ² = Σ_j G_ij² / (G_ii G_jj)`` (column ``neighbour_overlap``). That term is exact on noiseless
pairs of like galaxies, but with it the blends of both injections (real frames, simulated CCDs)
read 0.5-1 % lower and their PIT KS rose from 0.012-0.016 to 0.033-0.038, so it is not applied
(``reports/lumos/crosstalk``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["OFFSETS_PX", "MAX_LEAK_ERR", "MAX_LEAK", "CLIP", "Leak", "leak_sums", "fit_leak"]

OFFSETS_PX: tuple[tuple[int, int], ...] = ((3, 0), (-3, 0), (-2, 4), (2, -4), (4, 5), (-4, -5), (0, 8), (0, -8))
"""Integer offsets (dx, dy) in pixels of the synthetic zero-flux target from the real one: 3.0, 4.5,
6.4 and 8.0 px, each in two opposite directions (a galaxy's model is point-symmetric, its leak the
same at both; the sky's gradients cancel), the range of separations at which the joint fit
matters (docs/neighbours.md)."""

MAX_LEAK_ERR: float = 0.01
"""Largest bootstrap error of a measured ``κ`` that is applied; a noisier measurement (few or faint
calibrators) leaves the model ``-(1 - 1/k)``."""

MAX_LEAK: float = 0.2
"""Largest ``|κ|`` applied: beyond it the catalogue or the PSF FWHM is wrong, not the models' wings."""

CLIP: float = 4.0
"""Calibrators whose synthetic blends depart from the median leak by more than this many robust
sigmas (at least their noise's) are left out of the pooled leak: a real source or a sky feature
within a few pixels of one moves it far beyond its noise. On the SDSS r frame, 25 of 408 calibrators, whose
galaxies were their models, had taken the pooled leak to -2.6 %; without them it is -0.4 %."""

_BOOTSTRAP = 200

_BLOCK = 32
"""Targets whose synthetic blends are summed together: their stamps' templates and spectra, a few MB,
stay in the CPU's caches (535 calibrators at once took twice the CPU time of blocks of 32 on a
process's first call, 1.2 times on later calls, and 3.4 times the memory)."""


@dataclasses.dataclass(frozen=True)
class Leak:
    """The exposure's measured leak (module docstring).

    Attributes
    ----------
    kappa : float
        Fraction of the neighbours' fitted light (``neighbour_light``) that a blended target keeps
        (negative: the fit took out more than was there); NaN when nothing was measured.
    kappa_err : float
        Its bootstrap standard error over the calibrators (NaN when not measured).
    n_calibrators : int
        Targets that measured it.
    reliable : bool
        ``n_calibrators`` at least the minimum, ``kappa_err <= MAX_LEAK_ERR`` and ``|kappa| <= MAX_LEAK``.
    """

    kappa: float
    kappa_err: float
    n_calibrators: int
    reliable: bool


def _shifted(models: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``models`` (n, S, S) moved by (``dx``, ``dy``) pixels, zeros where nothing moved in."""
    out = np.zeros_like(models)
    s = models.shape[-1]
    ys, yd = (slice(0, s - dy), slice(dy, s)) if dy >= 0 else (slice(-dy, s), slice(0, s + dy))
    xs, xd = (slice(0, s - dx), slice(dx, s)) if dx >= 0 else (slice(-dx, s), slice(0, s + dx))
    out[:, yd, xd] = models[:, ys, xs]
    return out


def _correlator(correlation: np.ndarray, size: int):
    """The noise correlation ``K`` (2 L + 1 square, centred on lag 0, symmetric) applied to stamps ``u``
    (n, ``size``, ``size``) in Fourier space, on a grid padded by ``L``: two pixels of a stamp are
    less than ``size`` apart, so no lag that ``K`` holds wraps onto another.

    Returns ``(transform, weight)``: ``transform(u)`` the real transforms of the stamps over their last
    two axes; ``weight`` (real, the half spectrum's shape) such that
    ``u_a . (K * u_b) = Σ weight (Re U_a Re U_b + Im U_a Im U_b)`` (Parseval)."""
    from scipy import fft

    lag = correlation.shape[0] // 2
    side = fft.next_fast_len(size + lag, real=True)
    wrapped = np.zeros((side, side))
    wrapped[: 2 * lag + 1, : 2 * lag + 1] = correlation
    # a symmetric kernel has a real transform
    kernel = fft.rfft2(np.roll(wrapped, (-lag, -lag), axis=(0, 1))).real
    # the half spectrum holds each column but the first (and the last, for an even side) twice
    columns = np.full(kernel.shape[1], 2.0)
    columns[0] = 1.0
    if side % 2 == 0:
        columns[-1] = 1.0

    def transform(u: np.ndarray) -> np.ndarray:
        return fft.rfft2(u, (side, side))

    return transform, np.ascontiguousarray(kernel * columns / float(side * side))


_FIXED = np.array([0, 2, 3, 4])
"""Places of the four templates that do not move with the offset (the target's model, the constant,
the two sky slopes) among a synthetic blend's five; the moved model is the second."""


def _bordered(fixed: np.ndarray, row: np.ndarray, corner: np.ndarray) -> np.ndarray:
    """Symmetric (n, 5, 5) matrices of the five templates' pairwise sums from those of the fixed ones
    (n, 4, 4), the moved model's with each of them (n, 4) and its own (n,)."""
    out = np.empty((fixed.shape[0], 5, 5))
    out[:, _FIXED[:, None], _FIXED[None, :]] = fixed
    out[:, 1, _FIXED] = out[:, _FIXED, 1] = row
    out[:, 1, 1] = corner
    return out


def _as_real(spectra: np.ndarray) -> np.ndarray:
    """Complex spectra (..., A, B) as real vectors (..., 2 A B), real and imaginary parts interleaved:
    the dot product of two such vectors is ``Σ Re a Re b + Im a Im b``."""
    spectra = np.ascontiguousarray(spectra)
    return spectra.reshape(*spectra.shape[:-2], -1).view(np.float64)


def leak_sums(data: np.ndarray, usable: np.ndarray, models: np.ndarray, sky: np.ndarray, variance: np.ndarray, *,
              offsets: tuple[tuple[int, int], ...] = OFFSETS_PX, correlation: np.ndarray | None = None,
              exptime: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each target's synthetic blends (module docstring): ``(Σ a_f c_f / v_f, Σ c_f² / v_f)`` over ``offsets``,
    each less its noise's expectation.

    The two amplitudes come from the same pixels, so their noises correlate: ``E[a_f c_f]`` is
    ``κ c_f²`` plus ``r Cov(a_f, a_j)`` (``r = G_jf / G_ff``), and ``E[c_f²]`` holds ``r² Var(a_j)``.
    Both are taken out, computed under the frame's noise ``correlation`` and with the target's own
    photon noise (``exptime``).

    Parameters
    ----------
    data : ndarray, shape (n, S, S)
        The targets' stamps (e-/s per pixel), NaN where masked.
    usable : ndarray of bool, shape (n, S, S)
        Pixels the fit may use (finite, not another source's).
    models : ndarray, shape (n, S, S)
        Unit-flux PSF-convolved models on the stamps' grids.
    sky : ndarray, shape (n,)
        Each stamp's sky (e-/s per pixel), subtracted.
    variance : ndarray, shape (n,)
        Each stamp's pixel-noise variance ((e-/s)^2).
    offsets : tuple of (int, int), keyword-only
        Offsets (dx, dy) in pixels of the zero-flux target (:data:`OFFSETS_PX`).
    correlation : ndarray, keyword-only
        The sky noise's correlation ``C(lag) / C(0)``, (2 L + 1) square, centred on lag 0
        (:func:`lumos_ops.photometry.noise_correlation.noise_correlation`); None: white noise.
    exptime : float, keyword-only
        Exposure time (s): the target's photon noise, ``a_j m_j / exptime`` ((e-/s)^2 per pixel),
        is added to the sky's. None: background-limited.

    Returns
    -------
    tuple of ndarray, each shape (n,)
        The two sums (dimensionless): their pooled ratio is ``κ``. Zero for a target whose fits
        were degenerate or whose variance is not positive.
    """
    n = data.shape[0]
    num, den = np.zeros(n), np.zeros(n)
    correlator = None if correlation is None else _correlator(np.asarray(correlation, dtype=np.float64), data.shape[-1])
    # every target's sums are its own: blocks of targets keep the working arrays small
    for start in range(0, n, _BLOCK):
        rows = slice(start, min(start + _BLOCK, n))
        num[rows], den[rows] = _block_sums(np.asarray(data[rows]), np.asarray(usable[rows]), np.asarray(models[rows]),
                                           np.asarray(sky)[rows], np.asarray(variance)[rows], offsets=offsets,
                                           correlator=correlator, exptime=exptime)
    return num, den


def _block_sums(data: np.ndarray, usable: np.ndarray, models: np.ndarray, sky: np.ndarray, variance: np.ndarray, *,
                offsets: tuple[tuple[int, int], ...], correlator, exptime: float | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`leak_sums` of one block of targets; ``correlator``: :func:`_correlator` of the noise
    correlation, None for white noise."""
    n = data.shape[0]
    num, den = np.zeros(n), np.zeros(n)
    ok = np.asarray(usable, dtype=bool) & np.isfinite(data)
    d = np.where(ok, data - np.asarray(sky, dtype=np.float32)[:, None, None], np.float32(0.0)).astype(np.float64)
    m = np.where(ok, models, np.float32(0.0)).astype(np.float64)
    size = data.shape[-1]
    pixels = size * size
    ramp = (np.arange(size) - size // 2) / float(size)
    # the templates that do not move with the offset: the target's model and the sky, flat and sloped
    # (its errors are every target's, not the neighbour's); the moved model goes second, so the
    # estimators' order is (target, zero-flux target, constant, x slope, y slope)
    fixed = np.stack((m, ok.astype(np.float64), np.where(ok, ramp[None, None, :], 0.0),
                      np.where(ok, ramp[None, :, None], 0.0)), axis=1).reshape(n, 4, pixels)
    var = np.asarray(variance, dtype=np.float64)
    if correlator is not None:
        # H_ab = T_a . (K * T_b) of the fixed templates, once; the moved model's row per offset
        transform, weight = correlator
        spectra = transform(fixed.reshape(n, 4, size, size))
        weighted_spectra = _as_real(spectra * weight)
        cov_fixed = np.matmul(weighted_spectra, _as_real(spectra).transpose(0, 2, 1))
        del spectra
    gram_fixed = np.matmul(fixed, fixed.transpose(0, 2, 1))
    b_fixed = np.matmul(fixed, d.reshape(n, pixels, 1))[:, :, 0]
    # the target's photon noise a_j m / exptime, split by the sign of m so that the amplitude a_j,
    # which moves with the offset, factors out of the clipped variance
    photon_parts = [] if exptime is None else [
        part.reshape(n, pixels) / float(exptime) for part in (np.clip(m, 0.0, None), np.clip(-m, 0.0, None))]
    photon_gram = [np.matmul(fixed * part[:, None, :], fixed.transpose(0, 2, 1)) for part in photon_parts]
    for dx, dy in offsets:
        f = np.where(ok, _shifted(np.asarray(models), dx, dy), np.float32(0.0)).astype(np.float64).reshape(n, pixels)
        gram = _bordered(gram_fixed, np.matmul(fixed, f[:, :, None])[:, :, 0], np.einsum("np,np->n", f, f))
        b = np.concatenate([b_fixed[:, :1], np.einsum("np,np->n", f, d.reshape(n, pixels))[:, None], b_fixed[:, 1:]],
                           axis=1)
        cond = np.linalg.cond(gram)
        good = np.flatnonzero(np.isfinite(cond) & (cond < 1e10) & (var > 0))
        if good.size == 0:
            continue
        inverse = np.linalg.inv(gram[good])
        a = np.einsum("nij,nj->ni", inverse, b[good])
        r = gram[good, 0, 1] / gram[good, 1, 1]
        c_f = a[:, 0] * r
        if correlator is None:
            cov = inverse
        else:
            # the amplitudes' covariance under the correlated noise is G^-1 H G^-1
            moved = transform(f.reshape(n, size, size))
            h = _bordered(cov_fixed, np.matmul(weighted_spectra, _as_real(moved)[:, :, None])[:, :, 0],
                          np.einsum("nij,ij->n", moved.real ** 2 + moved.imag ** 2, weight))
            cov = np.einsum("nab,nbc,ncd->nad", inverse, h[good], inverse)
        cov_fj, var_f, var_j = var[good] * cov[:, 1, 0], var[good] * cov[:, 1, 1], var[good] * cov[:, 0, 0]
        if exptime is not None:
            # sum_p T_a T_b a_j m_p / exptime, clipped at 0 pixel by pixel
            photons = np.zeros((good.size, 5, 5))
            for sign, gram_part, part in zip((1.0, -1.0), photon_gram, photon_parts, strict=True):
                lit = f * part
                p = _bordered(gram_part, np.matmul(fixed, lit[:, :, None])[:, :, 0], np.einsum("np,np->n", lit, f))
                photons += np.clip(sign * a[:, 0], 0.0, None)[:, None, None] * p[good]
            photon_cov = np.einsum("nab,nbc,ncd->nad", inverse, photons, inverse)
            cov_fj, var_f, var_j = cov_fj + photon_cov[:, 1, 0], var_f + photon_cov[:, 1, 1], var_j + photon_cov[:, 0, 0]
        use = np.isfinite(a[:, 1]) & np.isfinite(c_f) & (var_f > 0)
        rows = good[use]
        num[rows] += (a[use, 1] * c_f[use] - r[use] * cov_fj[use]) / var_f[use]
        den[rows] += (c_f[use] ** 2 - r[use] ** 2 * var_j[use]) / var_f[use]
    return num, den


def _pooled(num: np.ndarray, den: np.ndarray) -> float:
    """``Σ num / Σ den`` over the calibrators whose normalised residual ``z = (num - κ₀ den) / √den`` lies
    within :data:`CLIP` robust sigmas (1.4826 times the median absolute ``z``: 1 when the noise
    dominates, more where the galaxies' own leaks differ), ``κ₀`` the median of ``num / den``
    (every calibrator alike: a few bright ones beside real sources must not set it)."""
    centre = float(np.median(num / den))
    z = (num - centre * den) / np.sqrt(den)
    scale = max(1.4826 * float(np.median(np.abs(z))), 1.0)
    keep = np.abs(z) <= CLIP * scale
    return float(num[keep].sum() / den[keep].sum())


def fit_leak(num: np.ndarray, den: np.ndarray, *, min_calibrators: int, seed: int = 0) -> Leak:
    """The pooled ``κ`` of the calibrators' :func:`leak_sums` (rows with ``den`` > 0): ``Σ num / Σ den``
    over those within :data:`CLIP` of their noise from the median (:func:`_pooled`), its bootstrap error
    (200 seeded resamples of the calibrators, each clipped alike) and whether it is applied."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    use = np.isfinite(num) & np.isfinite(den) & (den > 0)
    num, den = num[use], den[use]
    n = int(use.sum())
    if n == 0:
        return Leak(float("nan"), float("nan"), 0, False)
    kappa = _pooled(num, den)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(_BOOTSTRAP, n))
    err = float(np.std([_pooled(num[d], den[d]) for d in draws], ddof=1)) if n > 1 else float("nan")
    reliable = n >= min_calibrators and np.isfinite(err) and err <= MAX_LEAK_ERR and abs(kappa) <= MAX_LEAK
    return Leak(kappa, err, n, bool(reliable))
