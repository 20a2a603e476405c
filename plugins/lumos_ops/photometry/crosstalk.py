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
    """A function giving ``u_a . (K * u_b)`` from the transforms that the returned ``transform`` makes
    of stamps ``u`` (n, ``size``, ``size``): ``K`` the noise correlation (2 L + 1 square, centred on lag
    0, symmetric), the sum over the stamp's pixels taken in Fourier space (Parseval) on a grid
    padded by ``L`` so that nothing wraps: one real transform per stamp, none back."""
    from scipy import fft

    lag = correlation.shape[0] // 2
    side = fft.next_fast_len(size + 2 * lag, real=True)
    wrapped = np.zeros((side, side))
    wrapped[: 2 * lag + 1, : 2 * lag + 1] = correlation
    kernel = fft.rfft2(np.roll(wrapped, (-lag, -lag), axis=(0, 1)))
    # the half spectrum holds each column but the first (and the last, for an even side) twice
    weight = np.full(kernel.shape[1], 2.0)
    weight[0] = 1.0
    if side % 2 == 0:
        weight[-1] = 1.0
    # a symmetric kernel has a real transform
    kernel = np.ascontiguousarray(kernel.real * weight / float(side * side))

    def transform(u: np.ndarray) -> np.ndarray:
        return fft.rfft2(u, (side, side))

    def dot(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        return (np.einsum("nij,ij,nij->n", fa.real, kernel, fb.real)
                + np.einsum("nij,ij,nij->n", fa.imag, kernel, fb.imag))

    return transform, dot


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
    if n == 0:
        return num, den
    ok = np.asarray(usable, dtype=bool) & np.isfinite(data)
    d = np.where(ok, data - np.asarray(sky, dtype=np.float32)[:, None, None], np.float32(0.0)).astype(np.float64)
    m = np.where(ok, models, np.float32(0.0)).astype(np.float64)
    size = data.shape[-1]
    ramp = (np.arange(size) - size // 2) / float(size)
    # the sky, flat and sloped: its errors are every target's, not the neighbour's
    sky_terms = (ok.astype(np.float64), np.where(ok, ramp[None, None, :], 0.0), np.where(ok, ramp[None, :, None], 0.0))
    var = np.asarray(variance, dtype=np.float64)
    fixed = (m, *sky_terms)
    correlate = None
    if correlation is not None:
        # T_a . (K * T_b) of the templates that do not move with the offset, once: the estimators'
        # covariances are combinations of these and of the moved model's
        transform, correlate = _correlator(np.asarray(correlation, dtype=np.float64), size)
        spectra = [transform(t) for t in fixed]
        fixed_cov = np.empty((n, 4, 4))
        for i in range(4):
            for j in range(i, 4):
                fixed_cov[:, i, j] = fixed_cov[:, j, i] = correlate(spectra[i], spectra[j])
    for dx, dy in offsets:
        f = np.where(ok, _shifted(np.asarray(models), dx, dy), np.float32(0.0)).astype(np.float64)
        templates = (m, f, *sky_terms)
        k = len(templates)
        gram = np.empty((n, k, k))
        for i, u in enumerate(templates):
            for j, w in enumerate(templates[i:], start=i):
                gram[:, i, j] = gram[:, j, i] = np.einsum("nij,nij->n", u, w)
        b = np.stack([np.einsum("nij,nij->n", u, d) for u in templates], axis=1)
        cond = np.linalg.cond(gram)
        good = np.flatnonzero(np.isfinite(cond) & (cond < 1e10) & (var > 0))
        if good.size == 0:
            continue
        inverse = np.linalg.inv(gram[good])
        a = np.einsum("nij,nj->ni", inverse, b[good])
        r = gram[good, 0, 1] / gram[good, 1, 1]
        c_f = a[:, 0] * r
        if correlate is None:
            cov_fj, var_f, var_j = (var[good] * inverse[:, 1, 0], var[good] * inverse[:, 1, 1],
                                    var[good] * inverse[:, 0, 0])
        else:
            # H_ab = T_a . (K * T_b) in the order of ``templates``; the amplitudes' covariance is G^-1 H G^-1
            moved = transform(f[good])
            h = np.empty((good.size, k, k))
            order = [0, 2, 3, 4]
            rows_, cols_ = np.ix_(order, order)
            h[:, rows_, cols_] = fixed_cov[good]
            for index, spectrum in zip(order, spectra, strict=True):
                h[:, 1, index] = h[:, index, 1] = correlate(moved, spectrum[good])
            h[:, 1, 1] = correlate(moved, moved)
            cov = np.einsum("nab,nbc,ncd->nad", inverse, h, inverse)
            cov_fj, var_f, var_j = var[good] * cov[:, 1, 0], var[good] * cov[:, 1, 1], var[good] * cov[:, 0, 0]
        if exptime is not None:
            # the estimators' pixel weights u_k = sum_l (G^-1)_kl T_l
            stack = np.stack([t[good] for t in templates], axis=1)
            u_j = np.einsum("nl,nlij->nij", inverse[:, 0], stack)
            u_f = np.einsum("nl,nlij->nij", inverse[:, 1], stack)
            photons = np.clip(a[:, 0, None, None] * m[good], 0.0, None) / float(exptime)
            cov_fj = cov_fj + np.einsum("nij,nij,nij->n", u_f, u_j, photons)
            var_f = var_f + np.einsum("nij,nij,nij->n", u_f, u_f, photons)
            var_j = var_j + np.einsum("nij,nij,nij->n", u_j, u_j, photons)
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
