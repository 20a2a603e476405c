"""What a photometry method receives and promises: :class:`TargetContext` and :class:`MeasureMethod`.

The contract between :mod:`lumos_ops.measure` (which builds a context with ``prepare_targets`` and
runs the methods) and the methods themselves (``lumos_ops.photometry``, ``lumos_ops.lumos.method``),
one floor below both so that a method needs nothing from the module that runs it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from lumos_ops.cutouts import Stamps, cut_mask, cut_stamps
from lumos_ops.io.exposure import Exposure

if TYPE_CHECKING:
    from lumos_ops.photometry.frame_sources import FrameSources
    from lumos_ops.photometry.inputs import PhotometryInputs
    from lumos_ops.photometry.neighbours import NeighbourFit

__all__ = ["TargetContext", "MeasureMethod"]


@runtime_checkable
class MeasureMethod(Protocol):
    """What :func:`measure_exposure` needs from a photometry method."""

    name: str

    def measure(self, ctx: TargetContext) -> pd.DataFrame:
        """One row per target of ``ctx`` (same order) with ``flux``, ``flux_err``, ``flag``."""
        ...


@dataclasses.dataclass(frozen=True)
class TargetContext:
    """Everything a method needs to measure the catalogue targets of one exposure.

    Attributes
    ----------
    exposure : Exposure
        The CCD image (e-/s per pixel) and its metadata (band, PSF, exposure time, ...).
    catalog : DataFrame
        The validated catalogue rows of the targets, in the caller's order (index 0..n-1).
    x, y : ndarray of float64, shape (n,)
        0-based pixel positions on the exposure (x = column); NaN when not computable.
    stamps : Stamps
        ``S x S`` cutouts (e-/s per pixel, NaN off the image or masked) centred as in
        ``lumos_ops.cutouts``; ``stamps.dx``, ``stamps.dy`` are the sub-pixel offsets.
    models : ndarray, shape (n, S, S), float32
        Unit-flux PSF-convolved Sersic model of each target at its sub-pixel offset, on the stamp
        grid (zeros for targets off the image).
    base_flags : ndarray of int64, shape (n,)
        Flags known before any measurement: OFF_IMAGE, EDGE (the stamp crosses the CCD edge),
        MASKED (the centre pixel is masked), BAD_PROFILE (shape clipped for rendering), BLENDED
        (a catalogued neighbour's model overlaps this target's: ``neighbours``).
    neighbours : NeighbourFit or None
        The joint fit of the blended targets
        (:func:`lumos_ops.photometry.neighbours.fit_neighbours`): for them ``stamps`` and
        :attr:`photometry_inputs` hold the target's light without its fitted neighbours'. None:
        every stamp is the image's own.
    mask_other_sources : bool
        Leave the pixels of other sources detected on the frame (not the target's own detection,
        :func:`lumos_ops.photometry.frame_sources.other_sources`) out of the model-weighted sums
        (``PhotometryInputs.exclude``), and replace them by the stamp's sky in LUMOS's stamp
        (``lumos_ops.lumos.preprocess.fill_with_sky``): the annulus background leaves them out too, and a
        large model's outer weights would otherwise collect their light (docs/background.md).
        Their light beyond the detections is subtracted from every cutout as the frame's own
        profile of it (:meth:`other_source_light`; ``stamps`` already have it subtracted).
        Targets fitted jointly with their catalogued neighbours keep the pixels of the fitted
        targets' detections (their light is the fit's; ``fitted_sources``) and leave the other
        sources out as every target does.
    other_light : ndarray or None
        :meth:`other_source_light` on the wide photometry cutouts (float32, (n, W, W),
        ``photometry.inputs.wide_stamp_size``), whose centre ``stamps`` had subtracted; None: computed
        when the photometry inputs are.
    other_groups : ndarray or None
        :meth:`other_detections` on the same wide cutouts (bool, (n, W, W)), from which ``other_light``
        was made and which :attr:`photometry_inputs` leaves out of the sums; None: computed when the
        photometry inputs are.
    fitted_sources : FrameSources or None
        The frame's detections without the groups of the jointly fitted targets
        (:func:`lumos_ops.photometry.frame_sources.without_groups`): the other sources of a fitted
        target. None: the fitted targets leave nothing out.
    """

    exposure: Exposure
    catalog: pd.DataFrame
    x: np.ndarray
    y: np.ndarray
    stamps: Stamps
    models: np.ndarray
    base_flags: np.ndarray
    neighbours: NeighbourFit | None = None
    mask_other_sources: bool = True
    other_light: np.ndarray | None = None
    other_groups: np.ndarray | None = None
    fitted_sources: FrameSources | None = None

    @property
    def n(self) -> int:
        """Number of targets."""
        return int(self.x.size)

    @property
    def on_image(self) -> np.ndarray:
        """Boolean (n,): the target centre lies on the image."""
        return self.stamps.on_image

    def take(self, index: np.ndarray | slice) -> TargetContext:
        """The context of a subset of the targets (catalogue rows re-indexed from 0)."""
        stamps = Stamps(**{f.name: getattr(self.stamps, f.name)[index] for f in dataclasses.fields(Stamps)})
        return TargetContext(
            exposure=self.exposure,
            catalog=self.catalog.iloc[index].reset_index(drop=True),
            x=self.x[index],
            y=self.y[index],
            stamps=stamps,
            models=self.models[index],
            base_flags=self.base_flags[index],
            neighbours=None if self.neighbours is None else self.neighbours.take(index),
            mask_other_sources=self.mask_other_sources,
            other_light=None if self.other_light is None else self.other_light[index],
            other_groups=None if self.other_groups is None else self.other_groups[index],
            fitted_sources=self.fitted_sources,
        )

    @property
    def neighbour_light(self) -> np.ndarray:
        """Float (n,): the fitted neighbours' light each target's matched filter would have read
        (e-/s; ``NeighbourFit.contamination``; zeros without a fit)."""
        if self.neighbours is None or self.neighbours.contamination is None:
            return np.zeros(self.n)
        return self.neighbours.contamination

    @property
    def neighbour_overlap(self) -> np.ndarray:
        """Float (n,): ``sum_j G_ij^2 / (G_ii G_jj)`` over each target's fitted neighbours
        (``NeighbourFit.overlap``; zeros without a fit)."""
        if self.neighbours is None or self.neighbours.overlap is None:
            return np.zeros(self.n)
        return self.neighbours.overlap

    @property
    def variance_factor(self) -> np.ndarray:
        """Float (n,): each target's flux variance in the joint fit with its neighbours over the
        isolated target's (``NeighbourFit.variance_factor``; ones without neighbours)."""
        if self.neighbours is None:
            return np.ones(self.n)
        return self.neighbours.variance_factor

    @functools.cached_property
    def stamp_source_mask(self) -> np.ndarray:
        """Pixels of sources detected once on the whole frame (``lumos_ops.photometry.frame_sources``,
        the classical backgrounds' detections), cut like ``stamps``: bool (n, S, S). A LUMOS model
        whose stamp background is the masked annulus leaves them out instead of detecting sources in
        every stamp (``reports/lumos/matched-filter/frame_mask_check.py`` compares the two)."""
        from lumos_ops.photometry.frame_sources import frame_sources

        return cut_mask(frame_sources(self.exposure.data).mask, self.stamps.x0, self.stamps.y0, self.stamps.size)

    @functools.cached_property
    def other_source_pixels(self) -> np.ndarray:
        """Pixels of ``stamps`` that belong to other detected sources than the target's own
        (:func:`lumos_ops.photometry.frame_sources.other_sources`): bool (n, S, S); all False when
        ``mask_other_sources`` is off. A jointly fitted target's other sources leave out the fitted
        targets' detections (:meth:`other_pixels`)."""
        if not self.mask_other_sources:
            return np.zeros(self.stamps.data.shape, dtype=bool)
        return self.other_pixels(self.stamps.x0, self.stamps.y0, self.stamps.size)

    def other_pixels(self, x0: np.ndarray, y0: np.ndarray, size: int, *,
                     groups: np.ndarray | None = None) -> np.ndarray:
        """Bool (n, size, size): the pixels of other detected sources than each target's own in the
        ``size`` px cutouts whose pixel [0, 0] is at (``x0``, ``y0``)
        (:func:`lumos_ops.photometry.frame_sources.other_sources` of the frame's detections). A
        jointly fitted target's stamps are cut from the image less the fitted light, and its errors
        carry the fit's cost (``variance_factor``), which leaving the fitted targets' pixels out
        would count again: its other sources are those of ``fitted_sources``, every detection but
        the fitted targets' (none where it is None). ``groups``: :meth:`other_detections` of the same
        cutouts, when already computed."""
        from lumos_ops.photometry.frame_sources import frame_sources, other_sources

        x0, y0 = np.asarray(x0), np.asarray(y0)
        out = np.zeros((x0.size, size, size), dtype=bool)
        fitted = self._fitted_rows()
        for rows, sources in ((~fitted, frame_sources(self.exposure.data)), (fitted, self.fitted_sources)):
            if sources is not None and rows.any():
                out[rows] = other_sources(cut_mask(sources.mask, x0[rows], y0[rows], size),
                                          cut_mask(sources.detected, x0[rows], y0[rows], size),
                                          others=None if groups is None else groups[rows])
        return out

    def other_detections(self, x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
        """Bool (n, size, size): the detected pixels (not grown) of other sources than each target's own in
        the ``size`` px cutouts whose pixel [0, 0] is at (``x0``, ``y0``)
        (:func:`lumos_ops.photometry.frame_sources.other_sources` of the cut detections), those of
        ``fitted_sources`` for the jointly fitted targets (none where it is None), as
        :meth:`other_pixels` groups them."""
        from lumos_ops.photometry.frame_sources import frame_sources, other_sources

        x0, y0 = np.asarray(x0), np.asarray(y0)
        out = np.zeros((x0.size, size, size), dtype=bool)
        fitted = self._fitted_rows()
        for rows, sources in ((~fitted, frame_sources(self.exposure.data)), (fitted, self.fitted_sources)):
            if sources is not None and rows.any():
                out[rows] = other_sources(cut_mask(sources.detected, x0[rows], y0[rows], size))
        return out

    def other_source_light(self, x0: np.ndarray, y0: np.ndarray, size: int, *,
                           groups: np.ndarray | None = None) -> np.ndarray:
        """The light of other detected sources beyond their detections in the ``size`` px cutouts of
        this exposure whose pixel [0, 0] is at (``x0``, ``y0``), one per target: the frame's own
        profile of it by distance to the nearest other detection
        (:func:`lumos_ops.photometry.wing_light.wing_light`), e-/s per pixel, float32 (n, size, size),
        which every method's cutouts have subtracted. Zeros when ``mask_other_sources`` is off. For
        the targets fitted jointly with their catalogued neighbours, whose neighbours' light the fit
        takes out, the sources beyond the fitted targets' detections (``fitted_sources``; zeros
        where it is None). ``groups``: :meth:`other_detections` of the same cutouts, when already
        computed."""
        x0, y0 = np.asarray(x0), np.asarray(y0)
        if not self.mask_other_sources:
            return np.zeros((x0.size, size, size), dtype=np.float32)
        from lumos_ops.photometry.wing_light import frame_wing_profile, wing_map

        profile = frame_wing_profile(self.exposure.data)
        if x0.size == 0 or not np.any(profile.excess):
            return np.zeros((x0.size, size, size), dtype=np.float32)
        return wing_map(profile, self.other_detections(x0, y0, size) if groups is None else groups)

    def _fitted_rows(self) -> np.ndarray:
        """Boolean (n,): the targets fitted jointly with their catalogued neighbours."""
        if self.neighbours is None:
            return np.zeros(self.n, dtype=bool)
        return np.asarray(self.neighbours.fitted, dtype=bool)

    def lumos_background(self, norm) -> np.ndarray | None:
        """The stamp background (e-/s per pixel, shape (n,)) that a LUMOS network with normalisation
        ``norm`` subtracts, for ``prepare_inputs(..., background=)``: the masked annulus mean without
        the frame's detections (:attr:`stamp_source_mask`), or None for the stamp median, which
        ``prepare_inputs`` computes itself."""
        if norm.stamp_background != "masked_annulus":
            return None
        from lumos_ops.lumos.preprocess import sky_background

        return sky_background(self.stamp_sky, self.stamps.data)

    @functools.cached_property
    def stamp_sky(self):
        """The masked annulus sky of every 60 px stamp (``lumos_ops.lumos.preprocess.stamp_sky`` with
        :attr:`stamp_source_mask`): ``mean`` (e-/s per pixel) and ``variance`` ((e-/s)^2)."""
        from lumos_ops.lumos.preprocess import stamp_sky

        return stamp_sky(self.stamps.data, source_mask=self.stamp_source_mask)

    @functools.cached_property
    def photometry_inputs(self) -> PhotometryInputs:
        """Wide cutouts (>= 92 px, for the 30-45 px background annulus) with the models padded onto them.

        Computed once per context and shared by the classical methods. The sources the background
        leaves out are detected once per frame (``lumos_ops.photometry.frame_sources``).
        """
        from lumos_ops.photometry.frame_sources import frame_sources
        from lumos_ops.photometry.inputs import PhotometryInputs, pad_models, wide_stamp_size

        size = wide_stamp_size(self.stamps.size)
        wide = cut_stamps(self.exposure.data, self.x, self.y, size=size)
        if self.neighbours is not None:
            wide = self.neighbours.clean(wide, self.models)
        light = self.other_light if self.other_light is not None else self.other_source_light(wide.x0, wide.y0, size)
        if self.exposure.saturate is not None:  # saturated pixels keep their value (Flag.SATURATED)
            light = np.where(wide.data >= self.exposure.saturate, np.float32(0.0), light)
        wide = dataclasses.replace(wide, data=wide.data - light)
        ny, nx = self.exposure.shape
        offsets = np.arange(size)
        rows_ok = (wide.y0[:, None] + offsets[None, :] >= 0) & (wide.y0[:, None] + offsets[None, :] < ny)
        cols_ok = (wide.x0[:, None] + offsets[None, :] >= 0) & (wide.x0[:, None] + offsets[None, :] < nx)
        on_chip = rows_ok[:, :, None] & cols_ok[:, None, :]
        sources = frame_sources(self.exposure.data)
        source_mask = cut_mask(sources.mask, wide.x0, wide.y0, size)
        exclude = None
        if self.mask_other_sources:
            exclude = self.other_pixels(wide.x0, wide.y0, size, groups=self.other_groups)
        return PhotometryInputs.from_arrays(
            wide.data,
            pad_models(self.models, size),
            dx=wide.dx,
            dy=wide.dy,
            q=self.catalog["q"].to_numpy(np.float64),
            pa=self.catalog["pa"].to_numpy(np.float64),
            exptime=self.exposure.exptime,
            on_chip=on_chip,
            saturate=self.exposure.saturate,
            measurable=self.on_image,
            source_mask=source_mask,
            exclude=exclude,
        )
