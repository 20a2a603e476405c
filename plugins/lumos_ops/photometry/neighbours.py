"""Catalogued neighbours fitted jointly with each target, and their light taken out of its stamps.

Forced photometry measures every catalogue target with its own model. Where the models of two
targets overlap, each target's stamp holds part of the other's light, and every estimator that
reads one stamp at a time (aperture, optimal weights, profile fit, the LUMOS network) counts it:
a neighbour at 3-8 px biases them all by +20 % to +35 % (the real-frame injections of
``reports/lumos/injection``). The catalogue knows the neighbour's position and shape, so its light
can be modelled:

1. every pair of targets whose stamps overlap gets the overlap of their unit-flux models,
   ``G_ij = sum_p m_i(p) m_j(p)`` over the usable pixels ``p`` of the image (finite pixels of
   both stamps, on the image grid they share);
2. a pair is a *blend* when either galaxy's light moves the other's matched filter by at least
   ``min_contamination`` (0.1) of its noise: ``|a0_j G_ij / G_ii| >= 0.1 s_i / sqrt(G_ii)``, with
   ``a0_j = b_j / G_jj`` the neighbour's own matched filter, ``b_i = sum_p m_i(p) (d(p) - B_i)``,
   ``B_i`` and ``s_i^2`` the mean and the pixel variance of the target's sky (the source-masked
   annulus from S/4 to S/2 - 1 px);
3. blends linked into groups get amplitudes from the joint linear least squares of the image,
   ``G a = b`` (uniform pixel weights); in a group of more than :data:`MAX_GROUP` targets (crowded
   fields) each target's system holds only itself and its own blended partners;
4. each blended target's stamps are cut from the image minus ``sum_j a_j m_j`` over the blended
   targets, with its own ``a_i m_i`` added back: its own light is left and its neighbours' is gone,
   whichever estimator reads it. Every other target is measured on the image's own pixels: a
   neighbour that moves it by less than a tenth of its noise is left alone, which keeps catalogue
   models out of the stamps (and background annuli) where their errors would cost more than the
   light they remove.

The matched filter of the target's model on its cleaned stamp is exactly its joint amplitude
``a_i`` (row ``i`` of ``G a = b``), whose variance under white sky noise ``s^2`` is
``s^2 (G^-1)_ii`` instead of the isolated ``s^2 / G_ii``. The ratio, ``variance_factor``, is the
price of sharing light with a neighbour; the errors of every method multiply the background part
of their variance by it (``noise_calibration.apply_error_scale``). It is exact for the matched
filter and the optimal weighted sum's sky term, and approximate for the other estimators.

Correlated sky noise. A real frame's noise is correlated over several to tens of pixels
(resampling, undetected sources, sky structure): the sums ``b_i`` of two close targets then share
part of it, and it partly cancels in the joint amplitudes. With ``H`` the covariance of the sums
in units of the pixel variance, ``H_ij = sum_p sum_q u_i(p) K(p - q) u_j(q)`` for the sums'
weights ``u_i`` (the model less its share of the sky annulus' mean) and the frame's noise
correlation ``K`` (:mod:`lumos_ops.photometry.noise_correlation`, measured on the frame's
source-free pixels), the factor is ``(G^-1 H G^-1)_ii G_ii^2 / H_ii``, held at 1 or more: the joint
amplitude's variance over the isolated matched filter's, both with their sky annuli. Under white
noise it is ``G_ii (G^-1)_ii`` to the annuli's share (2-4 %). On the real frames the white factor
overstated the scatter of the blends' fluxes (docs/neighbours.md, "Correlated sky noise").

Uncatalogued light (stars, artefacts) is not modelled: given its detections (``exclude``) and their
wings (``other_light``), the fit leaves them out of its sums as every method does, so that a star's
light does not raise a neighbour's amplitude and take the target's light with it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lumos_ops.cutouts import Stamps, cut_mask

__all__ = ["NeighbourFit", "fit_neighbours", "BLENDED_VARIANCE", "MAX_GROUP", "MIN_CONTAMINATION"]

MIN_CONTAMINATION: float = 0.1
"""A neighbour is fitted and taken out when its light moves the target's matched filter by at least
this fraction of the target's noise (or the target moves the neighbour's)."""

BLENDED_VARIANCE: float = 1.1
"""``variance_factor`` above which a target is flagged ``BLENDED``."""

_MIN_RHO = 1e-5
"""Normalised overlaps below this are never blends (a neighbour would need SNR > 1e4 to move the
target by 0.1 of its noise)."""

_MAX_CONDITION = 1e8
"""Groups whose overlap matrix is worse conditioned (a target catalogued twice) are not fitted."""

MAX_GROUP: int = 400
"""Largest group of blended targets fitted as one linear system (its dense solve: 0.03 s on one thread).
At twice a PAUS CCD's density (5,000 targets on 4096 x 2048 px at 1" seeing) blends already link
into groups of ~600, and at one target per 300 px^2 into one group of thousands, whose dense solve
would take minutes to hours. Each target of a larger
group is fitted jointly with its own blended partners instead (their partners left out)."""


@dataclasses.dataclass(frozen=True)
class NeighbourFit:
    """The joint fit of the blended targets of one exposure (module docstring).

    Attributes
    ----------
    amplitude : ndarray of float64, shape (n,)
        Least-squares flux (e-/s) of each target's unit-flux model: joint for blended targets,
        the target's own matched filter otherwise; 0 for targets off the image or degenerate.
    variance_factor : ndarray of float64, shape (n,)
        The matched-filter flux variance of the joint fit over the isolated target's under the
        frame's sky noise (module docstring; ``G_ii (G^-1)_ii`` for white noise), at least 1; 1
        where not fitted.
    fitted : ndarray of bool, shape (n,)
        Blended targets fitted jointly: their stamps are cut from ``residual``.
    degenerate : ndarray of bool, shape (n,)
        Targets in a group whose models cannot be told apart (overlap matrix condition number
        above 1e8): not fitted, flagged ``BLENDED``.
    residual : ndarray of float32, shape (ny, nx), or None
        The image minus ``sum_j a_j m_j`` over the fitted targets (e-/s per pixel), from which
        their cleaned cutouts are cut; None when no target was fitted.
    contamination : ndarray of float64, shape (n,), or None
        ``sqrt(sum_j (a_j G_ij / G_ii)^2)`` over each fitted target's neighbours ``j`` in its group
        (e-/s): the neighbours' fitted light its own matched filter would have read, which their
        models took out (0 where not fitted; None: all 0). A model that is off by a fraction of
        its light leaves that fraction of it in the target's flux
        (:mod:`lumos_ops.photometry.error_floor`).
    overlap : ndarray of float64, shape (n,), or None
        ``sum_j G_ij^2 / (G_ii G_jj)`` over each fitted target's neighbours in its group: how much of
        the target's own light the neighbours' models read (0 where not fitted; None: all 0; the
        column ``neighbour_overlap``, :mod:`lumos_ops.photometry.crosstalk`).
    """

    amplitude: np.ndarray
    variance_factor: np.ndarray
    fitted: np.ndarray
    degenerate: np.ndarray
    residual: np.ndarray | None
    contamination: np.ndarray | None = None
    overlap: np.ndarray | None = None

    @property
    def blended(self) -> np.ndarray:
        """Boolean (n,): the targets flagged ``BLENDED`` (variance factor above
        :data:`BLENDED_VARIANCE`, or a degenerate group)."""
        return (self.variance_factor > BLENDED_VARIANCE) | self.degenerate

    def take(self, index: np.ndarray | slice) -> NeighbourFit:
        """The fit's rows of a subset of the targets; ``residual`` is shared."""
        return NeighbourFit(self.amplitude[index], self.variance_factor[index], self.fitted[index],
                            self.degenerate[index], self.residual,
                            None if self.contamination is None else self.contamination[index],
                            None if self.overlap is None else self.overlap[index])

    def clean(self, stamps: Stamps, models: np.ndarray) -> Stamps:
        """``stamps`` with the fitted targets' cutouts recut without their neighbours' fitted light.

        Parameters
        ----------
        stamps : Stamps
            Cutouts of the image the fit was made on (``lumos_ops.cutouts.cut_stamps``), one per
            target of this fit, of side ``S`` or larger by an even number.
        models : ndarray, shape (n, S, S)
            The unit-flux models the fit used.

        Returns
        -------
        Stamps
            ``stamps`` itself when no target was fitted, else a copy with the fitted rows cleaned.
        """
        from lumos_ops.cutouts import cut_stamps

        own = np.flatnonzero(self.fitted)
        if self.residual is None or own.size == 0:
            return stamps
        size, s = stamps.size, models.shape[-1]
        if size < s or (size - s) % 2:
            raise ValueError(f"cannot put {s} px models on {size} px cutouts: size - {s} must be even and >= 0")
        pad = (size - s) // 2
        x = stamps.x0[own] + size // 2 + stamps.dx[own]
        y = stamps.y0[own] + size // 2 + stamps.dy[own]
        cleaned = cut_stamps(self.residual, x, y, size=size).data
        cleaned[:, pad : pad + s, pad : pad + s] += self.amplitude[own].astype(np.float32)[:, None, None] * models[own]
        data = stamps.data.copy()
        data[own] = cleaned
        return dataclasses.replace(stamps, data=data)


def _overlap_pairs(x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
    """Index pairs ``(i, j)`` of stamps whose ``size x size`` windows overlap: int (m, 2).

    Sorted by column, each stamp is compared with the stamps after it up to ``size - 1`` columns
    away (numpy only: the classical methods' import path keeps scipy.sparse and scipy.spatial out).
    """
    order = np.argsort(x0, kind="stable")
    xs, ys = x0[order], y0[order]
    stop = np.searchsorted(xs, xs + size, side="left")
    count = stop - np.arange(xs.size) - 1
    if xs.size < 2 or count.sum() == 0:
        return np.zeros((0, 2), dtype=np.int64)
    first = np.repeat(np.arange(xs.size), count)
    second = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + first + 1
    near = np.abs(ys[second] - ys[first]) < size
    return np.column_stack([order[first[near]], order[second[near]]]).astype(np.int64)


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest member index) of each of ``n`` nodes linked by ``pairs``."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[pairs[:, 0]], label[pairs[:, 1]])
        new = label.copy()
        np.minimum.at(new, pairs[:, 0], low)
        np.minimum.at(new, pairs[:, 1], low)
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def _pair_overlaps(weighted: np.ndarray, x0: np.ndarray, y0: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``sum_p m_i(p) m_j(p)`` of every pair on the image grid (``weighted``: models zeroed on unusable pixels)."""
    size = weighted.shape[-1]
    out = np.empty(len(pairs))
    for k, (i, j) in enumerate(pairs):
        ox, oy = int(x0[j] - x0[i]), int(y0[j] - y0[i])
        r0, r1 = max(0, oy), min(size, size + oy)
        c0, c1 = max(0, ox), min(size, size + ox)
        a = weighted[i, r0:r1, c0:c1]
        b = weighted[j, r0 - oy : r1 - oy, c0 - ox : c1 - ox]
        out[k] = float(np.einsum("ij,ij->", a, b, dtype=np.float64))
    return out


def _sky(stamps: Stamps, index: np.ndarray, source_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Source-masked annulus mean (e-/s per pixel) and pixel variance ((e-/s)^2) of the stamps
    ``index``, from S/4 to S/2 - 1 px; the median of the finite pixels and the median variance where
    the annulus has none."""
    from lumos_ops.photometry.background import annulus_background

    data = stamps.data if index.size == stamps.data.shape[0] else stamps.data[index]
    size = stamps.size
    mask = None if source_mask is None else cut_mask(source_mask, stamps.x0[index], stamps.y0[index], size)
    background = annulus_background(data, stamps.dx[index], stamps.dy[index], r_in=size / 4.0,
                                     r_out=size / 2.0 - 1.0, source_mask=mask)
    sky, variance = background.mean, background.variance
    empty = ~np.isfinite(sky)
    if empty.any():
        with np.errstate(all="ignore"):
            sky[empty] = np.nan_to_num(np.nanmedian(data[empty].reshape(int(empty.sum()), -1), axis=1))
    bad = ~(np.isfinite(variance) & (variance > 0))
    if bad.any():
        good = variance[~bad]
        variance[bad] = np.median(good) if good.size else np.inf
    return sky, variance


def fit_neighbours(image: np.ndarray, stamps: Stamps, models: np.ndarray, *,
                   source_mask: np.ndarray | None = None, min_contamination: float = MIN_CONTAMINATION,
                   exclude: np.ndarray | None = None, other_light: np.ndarray | None = None,
                   correlation: np.ndarray | bool = True) -> NeighbourFit:
    """Find the blends among the targets and fit each group of them jointly (module docstring).

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        The exposure (e-/s per pixel), NaN where masked: the image ``stamps`` were cut from.
    stamps : Stamps
        The targets' cutouts (``lumos_ops.cutouts.cut_stamps``), ``S x S``.
    models : ndarray, shape (n, S, S)
        Unit-flux PSF-convolved models on the stamps' grids (zeros for targets off the image).
    source_mask : ndarray of bool, shape (ny, nx), keyword-only
        Pixels of detected sources (``photometry.frame_sources``), left out of the sky annulus;
        None detects them in each stamp.
    min_contamination : float, keyword-only
        Smallest shift of a matched filter by a neighbour, in units of its noise, that makes the
        pair a blend (:data:`MIN_CONTAMINATION`).
    exclude : ndarray of bool, shape (n, S, S), keyword-only
        Pixels of each stamp left out of the fit's sums: the uncatalogued sources' detections
        (stars, artefacts), which every method leaves out too
        (:class:`lumos_ops.target_context.TargetContext`). None: every finite pixel.
    other_light : ndarray, shape (n, S, S), keyword-only
        Those sources' light beyond their detections (e-/s per pixel), subtracted from the stamps
        before the fit, as every method's cutouts have it subtracted. None: nothing.
    correlation : ndarray or bool, keyword-only
        The sky noise's spatial correlation, for the variance factors (module docstring,
        "Correlated sky noise"): True measures it on ``image`` outside ``source_mask`` (None: the
        frame's detections) when a group is fitted
        (:func:`lumos_ops.photometry.noise_correlation.noise_correlation`); an array
        (``(2 L + 1)^2``, 1 at lag 0) gives it; False takes the noise as white (``G_ii (G^-1)_ii``).

    Returns
    -------
    NeighbourFit
    """
    n = models.shape[0]
    amplitude = np.zeros(n)
    factor = np.ones(n)
    degenerate = np.zeros(n, dtype=bool)
    fitted = np.zeros(n, dtype=bool)
    contamination = np.zeros(n)
    on = np.flatnonzero(stamps.on_image)
    pairs = on[_overlap_pairs(stamps.x0[on], stamps.y0[on], stamps.size)]
    if not len(pairs):
        return NeighbourFit(amplitude, factor, fitted, degenerate, None)
    usable = np.isfinite(stamps.data)
    if exclude is not None:
        usable &= ~np.asarray(exclude, dtype=bool)
    if other_light is not None:
        stamps = dataclasses.replace(stamps, data=stamps.data - np.asarray(other_light, dtype=np.float32))
    weighted = np.where(usable, models, np.float32(0.0))
    diag = np.square(weighted).sum(axis=(1, 2), dtype=np.float64)
    pairs = pairs[(diag[pairs[:, 0]] > 0) & (diag[pairs[:, 1]] > 0)]
    overlap = _pair_overlaps(weighted, stamps.x0, stamps.y0, pairs)
    # A neighbour of signal-to-noise SNR_j moves the target by about SNR_j rho_ij of its noise (rho
    # the normalised overlap): below rho = 1e-5 no pair of unsaturated galaxies is a blend, and those
    # targets need no sky.
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = overlap / np.sqrt(diag[pairs[:, 0]] * diag[pairs[:, 1]])
    pairs, overlap = pairs[rho >= _MIN_RHO], overlap[rho >= _MIN_RHO]
    if not len(pairs):
        return NeighbourFit(amplitude, factor, fitted, degenerate, None)
    near = np.unique(pairs)
    sky, variance = np.zeros(n), np.ones(n)
    sky[near], variance[near] = _sky(stamps, near, source_mask)
    # b_i = sum_p m_i (d - B_i), without (n, S, S) float64 temporaries
    light = (weighted[near] * np.where(usable[near], stamps.data[near], np.float32(0.0))).sum(
        axis=(1, 2), dtype=np.float64)
    b = np.zeros(n)
    b[near] = light - sky[near] * weighted[near].sum(axis=(1, 2), dtype=np.float64)
    amplitude[near] = b[near] / diag[near]
    # a blend: one galaxy moves the other's matched filter by >= min_contamination of its noise
    noise = np.zeros(n)
    noise[near] = np.sqrt(variance[near] / diag[near])
    i, j = pairs[:, 0], pairs[:, 1]
    shift_i = np.abs(amplitude[j] * overlap / diag[i])
    shift_j = np.abs(amplitude[i] * overlap / diag[j])
    keep = (shift_i >= min_contamination * noise[i]) | (shift_j >= min_contamination * noise[j])
    pairs, overlap = pairs[keep], overlap[keep]
    if not len(pairs):
        return NeighbourFit(amplitude, factor, fitted, degenerate, None)
    label = _components(n, pairs)
    members = np.unique(pairs)
    order = np.argsort(label[members], kind="stable")
    groups = np.split(members[order], np.flatnonzero(np.diff(label[members][order])) + 1)
    pair_label = label[pairs[:, 0]]
    pair_order = np.argsort(pair_label, kind="stable")
    pair_groups = np.split(pair_order, np.flatnonzero(np.diff(pair_label[pair_order])) + 1)
    covariance = None
    if correlation is not False:
        covariance = _sum_covariances(image, stamps, weighted, members, pairs, source_mask,
                                      None if correlation is True else np.asarray(correlation, dtype=np.float64))
    for group, in_group in zip(groups, pair_groups, strict=True):
        cov_diag, cov_off = (None, None) if covariance is None else (covariance[0], covariance[1][in_group])
        if group.size > MAX_GROUP:
            _fit_locally(group, pairs[in_group], overlap[in_group], diag, b, amplitude, factor, fitted, degenerate,
                         contamination, cov_diag=cov_diag, cov_off=cov_off)
            continue
        gram = _group_matrix(group, pairs[in_group], overlap[in_group], diag)
        cov = None if covariance is None else _group_matrix(group, pairs[in_group], cov_off, cov_diag)
        solved = _solve(gram, b[group], cov)
        if solved is None:
            degenerate[group] = True
            amplitude[group] = 0.0
            continue
        amplitude[group], factor[group], contamination[group] = solved
        fitted[group] = True
    residual = None
    if fitted.any():
        residual = image - _paste(image.shape, stamps, models, amplitude, np.flatnonzero(fitted))
    share = np.zeros(n)
    both = fitted[pairs[:, 0]] & fitted[pairs[:, 1]]
    rho2 = overlap[both] ** 2 / (diag[pairs[both, 0]] * diag[pairs[both, 1]])
    np.add.at(share, pairs[both, 0], rho2)
    np.add.at(share, pairs[both, 1], rho2)
    return NeighbourFit(amplitude, factor, fitted, degenerate, residual, contamination, share)


def _group_matrix(group: np.ndarray, pairs: np.ndarray, values: np.ndarray, diag: np.ndarray) -> np.ndarray:
    """Symmetric matrix of one group: ``diag`` of its members on the diagonal, ``values`` of its pairs off it."""
    where = {int(t): k for k, t in enumerate(group)}
    matrix = np.diag(diag[group])
    for (a, c), value in zip(pairs, values, strict=True):
        matrix[where[int(a)], where[int(c)]] = matrix[where[int(c)], where[int(a)]] = value
    return matrix


def _solve(gram: np.ndarray, b: np.ndarray, cov: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Joint amplitudes (e-/s), variance factors and contaminations (e-/s) of one group with overlap
    matrix ``gram`` and matched-filter sums ``b``; None when the models cannot be told apart.

    ``cov``: the covariance of the sums ``b`` in units of the pixel variance (``H``, module
    docstring); the variance factor is then ``(G^-1 H G^-1)_ii G_ii^2 / H_ii``. None: white noise,
    ``H = G``, and the factor ``G_ii (G^-1)_ii``."""
    diag = np.diag(gram)
    scale = 1.0 / np.sqrt(diag)
    normed = gram * scale[:, None] * scale[None, :]
    if np.linalg.cond(normed) > _MAX_CONDITION:
        return None
    inverse = np.linalg.inv(normed)
    amplitude = scale * (inverse @ (b * scale))
    # the neighbours' light under each target's matched filter: a_j G_ij / G_ii, j != i
    off = gram - np.diag(diag)
    contamination = np.sqrt(np.square(off * amplitude[None, :]).sum(axis=1)) / diag
    if cov is None:
        variance = np.diag(inverse)
    else:
        cov_normed = cov * scale[:, None] * scale[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = np.diag(inverse @ cov_normed @ inverse) / np.diag(cov_normed)
        variance = np.where(np.isfinite(variance), variance, np.diag(inverse))
    return amplitude, np.maximum(variance, 1.0), contamination


def _fit_locally(group: np.ndarray, pairs: np.ndarray, overlap: np.ndarray, diag: np.ndarray, b: np.ndarray,
                 amplitude: np.ndarray, factor: np.ndarray, fitted: np.ndarray, degenerate: np.ndarray,
                 contamination: np.ndarray, *, cov_diag: np.ndarray | None = None,
                 cov_off: np.ndarray | None = None) -> None:
    """Fit each target of a group larger than :data:`MAX_GROUP` jointly with its own blended partners
    only (the partners' partners are left out), writing its results in place; ``cov_diag`` and
    ``cov_off`` (the sums' covariances, :func:`_solve`) as ``diag`` and ``overlap``."""
    where = np.full(int(group.max()) + 1, -1, dtype=np.int64)
    where[group] = np.arange(group.size)
    i, j = where[pairs[:, 0]], where[pairs[:, 1]]
    size = group.size
    keys = np.concatenate([i * size + j, j * size + i]).tolist()
    entries = dict(zip(keys, np.concatenate([overlap, overlap]).tolist()))
    cov_entries = None if cov_off is None else dict(zip(keys, np.concatenate([cov_off, cov_off]).tolist()))
    partners: list[list[int]] = [[] for _ in range(size)]
    for a, c in zip(i.tolist(), j.tolist()):
        partners[a].append(c)
        partners[c].append(a)

    def local_matrix(values: dict[int, float], diagonal: np.ndarray, local: np.ndarray) -> np.ndarray:
        cells = (local[:, None] * size + local[None, :]).ravel().tolist()
        matrix = np.fromiter((values.get(cell, 0.0) for cell in cells), dtype=np.float64, count=len(cells))
        matrix = matrix.reshape(local.size, local.size)
        matrix[np.diag_indices(local.size)] = diagonal[group[local]]
        return matrix

    for row in range(size):
        local = np.array([row, *partners[row]], dtype=np.int64)
        gram = local_matrix(entries, diag, local)
        cov = None if cov_entries is None or cov_diag is None else local_matrix(cov_entries, cov_diag, local)
        target = group[row]
        solved = _solve(gram, b[group[local]], cov)
        if solved is None:
            degenerate[target] = True
            amplitude[target] = 0.0
            continue
        amplitude[target], factor[target], contamination[target] = (v[0] for v in solved)
        fitted[target] = True


def _sum_covariances(image: np.ndarray, stamps: Stamps, weighted: np.ndarray, members: np.ndarray,
                     pairs: np.ndarray, source_mask: np.ndarray | None,
                     correlation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Covariances (units of the pixel variance) of the fit's sums ``b_i`` under the frame's
    correlated sky noise: ``H_ii`` of each target (shape (n,), 0 outside ``members``) and
    ``H_ij`` of each pair.

    Each ``b_i`` is a linear sum of the image with weights ``u_i = m_i - (sum m_i) A_i / |A_i|``,
    ``A_i`` the annulus its sky is the mean of (S/4 to S/2 - 1 px from the target, finite and
    outside ``source_mask``; the clip of :func:`~lumos_ops.photometry.background.annulus_background`
    is left out). ``correlation`` None: measured on ``image`` outside ``source_mask`` (None: the
    frame's detections, :func:`~lumos_ops.photometry.frame_sources.frame_sources`)."""
    from lumos_ops.photometry.noise_correlation import frame_noise_correlation, noise_correlation, weight_covariances

    if correlation is None:
        from lumos_ops.photometry.frame_sources import frame_sources

        # without a mask, the frame's detections: the targets' own light would read as correlated noise
        own = source_mask is None or source_mask is frame_sources(image).mask
        correlation = frame_noise_correlation(image) if own else noise_correlation(image, source_mask)
    size = stamps.size
    grid = np.arange(size) - size // 2
    weights = np.empty((members.size, size, size), dtype=np.float32)
    for start in range(0, members.size, 512):
        chunk = members[start : start + 512]
        ring = np.isfinite(stamps.data[chunk])
        if source_mask is not None:
            ring &= ~cut_mask(source_mask, stamps.x0[chunk], stamps.y0[chunk], size)
        radius = np.hypot(grid[None, None, :] - stamps.dx[chunk][:, None, None],
                          grid[None, :, None] - stamps.dy[chunk][:, None, None])
        ring &= (radius >= size / 4.0) & (radius <= size / 2.0 - 1.0)
        count = ring.sum(axis=(1, 2))
        light = weighted[chunk].sum(axis=(1, 2), dtype=np.float64)
        sky_weight = np.where(count > 0, light / np.maximum(count, 1), 0.0).astype(np.float32)
        weights[start : start + chunk.size] = weighted[chunk] - sky_weight[:, None, None] * ring
    where = np.full(stamps.data.shape[0], -1, dtype=np.int64)
    where[members] = np.arange(members.size)
    diagonal, off = weight_covariances(weights, stamps.x0[members], stamps.y0[members], where[pairs], correlation)
    full = np.zeros(stamps.data.shape[0])
    full[members] = diagonal
    return full, off


def _paste(shape: tuple[int, int], stamps: Stamps, models: np.ndarray, amplitude: np.ndarray,
           index: np.ndarray) -> np.ndarray:
    """``sum_j a_j m_j`` over the targets ``index`` on an image of ``shape`` (e-/s per pixel), float32."""
    ny, nx = shape
    size = stamps.size
    out = np.zeros(shape, dtype=np.float32)
    for j in index:
        x0, y0 = int(stamps.x0[j]), int(stamps.y0[j])
        r0, r1 = max(0, -y0), min(size, ny - y0)
        c0, c1 = max(0, -x0), min(size, nx - x0)
        if r1 <= r0 or c1 <= c0:
            continue
        out[y0 + r0 : y0 + r1, x0 + c0 : x0 + c1] += np.float32(amplitude[j]) * models[j, r0:r1, c0:c1]
    return out
