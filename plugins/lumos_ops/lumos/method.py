"""The ``"lumos"`` photometry method of :mod:`lumos_ops.measure`."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.flags import Flag
from lumos_ops.survey import UnknownBandError

__all__ = ["LumosMethod", "PSF_RANGE_MARGIN"]

log = logging.getLogger(__name__)

PSF_RANGE_MARGIN: float = 0.1
"""How far (a fraction) an exposure's PSF FWHM in pixels may lie beyond the model's training range
before its targets are flagged PSF_EXTRAPOLATED."""


class LumosMethod:
    """LUMOS fluxes of the targets of one exposure.

    Parameters
    ----------
    model : path-like, shipped-model name or None, keyword-only
        Checkpoint to use; None (default) is the shipped default model.
    model_path : path-like or None, keyword-only
        Alias of ``model`` (give at most one).
    batch_size : int, keyword-only
        Targets per network call.
    device : str or None, keyword-only
        ``"cuda"``, ``"cpu"``; None picks CUDA when available.

    Notes
    -----
    Output columns (one row per target, catalogue order). For a model trained under a reference
    prior (every shipped model; ``likelihood`` True) the mixture is the normalised likelihood of the
    flux: ``flux`` is its median and ``flux_err`` its 68 % half-width (e-/s), meant to be unbiased
    with frequentist coverage at fixed true flux (docs/likelihood.md; models/MODEL_CARD.md has the
    measured calibration). For a model trained on a population
    prior, ``flux`` is the posterior mean (eq. 15) and ``flux_err`` sqrt(eq. 16), with a warning.
    Then ``flag``, the mixture ``alpha_k``, ``mu_k``, ``sigma_k`` (e-/s, k = 0..4), its ``median``,
    ``mode`` (peak), ``sigma68``, ``sigma95``, ``eta``, ``truncated`` (the PDF is zero below f = 0:
    population-prior models, targets at or fainter than the truncation magnitude, eq. 10) and
    ``likelihood``. The mixture columns are the table form of :mod:`lumos_ops.lumos.mixture_table`
    (read them back with ``mixtures_from_table``).

    Targets whose stamp crosses the CCD edge or holds masked pixels are measured, not dropped:
    missing pixels are padded with the stamp's median (0 after background subtraction) and the
    row is flagged EDGE and/or MASKED. The pixels of other sources detected on the frame
    (``TargetContext.other_source_pixels``) are replaced by the stamp's sky, its masked annulus
    mean plus Gaussian noise of its pixel noise (:func:`~lumos_ops.lumos.preprocess.fill_with_sky`,
    seeded by the target's pixel position), without the MASKED flag: the network was trained on
    stamps without holes, and a hole made it read faint fluxes low.
    Targets off the image get NaN fluxes and OFF_IMAGE.
    Every target of an exposure whose PSF FWHM in pixels lies more than :data:`PSF_RANGE_MARGIN`
    outside the model's training range (``LoadedModel.trained_psf_fwhm_px``) is flagged
    PSF_EXTRAPOLATED, with a warning naming the exposure.
    Targets beyond the CCD area the model was trained on (``normalization.ccd_shape``) are measured
    with an extrapolated CCD-position input and flagged CCD_EXTRAPOLATED (models that do not read
    the CCD position never set it). Every target of an exposure whose band x camera epoch the
    model was never trained on is flagged UNTRAINED_BAND; a band the model does not embed at all
    (checkpoint metadata ``bands``) is measured through the row of the model band nearest in
    wavelength, so its outputs stay finite but uncalibrated.
    """

    name = "lumos"

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        model_path: str | os.PathLike[str] | None = None,
        batch_size: int = 1024,
        device: str | None = None,
    ) -> None:
        if model is not None and model_path is not None:
            raise LumosValueError("give either model or model_path, not both")
        if batch_size < 1:
            raise LumosValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model if model is not None else model_path
        self.batch_size = batch_size
        self.device = device
        self._loaded = None
        self._warned_posterior = False
        self._warned_psf: set[tuple[str, float]] = set()
        self._warned_band: set[tuple[str, str, int]] = set()

    @property
    def loaded(self):
        """The :class:`~lumos_ops.lumos.checkpoint.LoadedModel`, loaded on first use."""
        if self._loaded is None:
            from lumos_ops.lumos.checkpoint import load_checkpoint

            self._loaded = load_checkpoint(self.model, device=self.device)
        return self._loaded

    @property
    def shared_error(self):
        """The model's :class:`~lumos_ops.lumos.shared_error.SharedError` (metadata ``"shared_error"``), or None."""
        from lumos_ops.lumos.shared_error import shared_error_of

        try:
            return shared_error_of(self.loaded.metadata)
        except LumosValueError as exc:
            raise ModelError(f"{self.loaded.path}: metadata 'shared_error' is unreadable ({exc}); record it again with "
                             "`lumos model shared-error` or `lumos adapt`") from None

    def measure(self, ctx) -> pd.DataFrame:
        """Measure every target of a :class:`lumos_ops.measure.TargetContext`."""
        from lumos_ops.lumos.inference import mixture_table, predict_mixtures
        from lumos_ops.lumos.preprocess import fill_with_sky, prepare_inputs

        loaded = self.loaded
        size = loaded.net.config.stamp_size
        if ctx.stamps.size != size:
            raise LumosValueError(f"stamps are {ctx.stamps.size} px but the model needs {size} px; prepare_targets(stamp_size={size})")
        i_auto = ctx.catalog["i_auto"].to_numpy(np.float64)
        n = ctx.n
        row, known = self._band_epoch_row(loaded, ctx.exposure)
        band_epoch = np.full(n, row, dtype=np.int64)
        data = ctx.stamps.data
        background = ctx.lumos_background(loaded.normalization)
        other = ctx.other_source_pixels & np.isfinite(data)
        if other.any():
            # other sources' pixels become sky, as in the training stamps (a hole reads the flux low)
            level = background if background is not None else ctx.stamp_sky.mean
            seeds = np.column_stack([np.rint(ctx.x).astype(np.int64) & 0xFFFFFFFF,
                                     np.rint(ctx.y).astype(np.int64) & 0xFFFFFFFF])
            data = fill_with_sky(data, other, level, np.sqrt(ctx.stamp_sky.variance), seeds)
        inputs = prepare_inputs(data, ctx.models, i_auto, ctx.x, ctx.y, band_epoch, loaded.normalization,
                                background=background)
        mixtures = predict_mixtures(loaded, inputs, i_auto, batch_size=self.batch_size)
        if not loaded.is_likelihood and not self._warned_posterior:
            log.warning("LUMOS model %s was trained on a population flux prior: its fluxes are posterior means that "
                        "shrink toward that prior, not likelihood estimates; use a reference-prior model (lumos-fast-mf-v12-nobg-ft)",
                        loaded.path)
            self._warned_posterior = True
        columns = mixture_table(mixtures, likelihood=loaded.is_likelihood)
        flags = np.asarray(ctx.base_flags, dtype=np.int64).copy()
        off_chip = np.rint(ctx.stamps.off_chip_fraction * size * size).astype(np.int64)
        flags[ctx.stamps.off_chip_fraction > 0] |= Flag.EDGE
        flags[inputs.n_padded > off_chip] |= Flag.MASKED
        off = ~ctx.on_image
        flags[off] |= Flag.OFF_IMAGE
        for name in ("flux", "flux_err", "mean", "std", "median", "mode", "sigma68", "sigma95", "eta"):
            columns[name] = np.where(off, np.nan, columns[name])
        flags[columns["flux"] < 0] |= Flag.NEGATIVE_MODEL
        prior = loaded.flux_prior
        if prior is not None:
            near_edge = (columns["median"] + columns["sigma68"] > 0.95 * prior.high) & ~off
            flags[near_edge] |= Flag.PRIOR_EDGE
        if {"ccd_x", "ccd_y"} & set(loaded.net.config.inputs):
            outside = self._outside_training_ccd(ctx, loaded.normalization.ccd_shape) & ~off
            flags[outside] |= Flag.CCD_EXTRAPOLATED
        if self._psf_outside_training(ctx.exposure, loaded):
            flags[~off] |= Flag.PSF_EXTRAPOLATED
        trained = loaded.trained_band_epochs
        if not known or (trained is not None and row not in trained):
            key = (str(ctx.exposure.path), str(ctx.exposure.band), int(ctx.exposure.epoch))
            if key not in self._warned_band:  # once per exposure, not per chunk or calibration call
                self._warned_band.add(key)
                log.warning("%s: LUMOS model %s was not trained on band %s epoch %d; its targets are flagged "
                            "UNTRAINED_BAND", ctx.exposure.path, loaded.path, ctx.exposure.band, ctx.exposure.epoch)
            flags[~off] |= Flag.UNTRAINED_BAND
        columns["flag"] = flags
        frame = pd.DataFrame(columns)
        order = ["flux", "flux_err", "flag"] + [c for c in frame.columns if c not in ("flux", "flux_err", "flag")]
        return frame[order]

    @staticmethod
    def _band_epoch_row(loaded, exposure) -> tuple[int, bool]:
        """The model's embedding row for the exposure's band and epoch, and whether the model knows
        them. A band or epoch the model lacks borrows the row of the model band nearest in
        wavelength (the survey's band wavelength), else row 0, so that its outputs stay finite."""
        try:
            wavelength = exposure.wavelength_nm
        except UnknownBandError:
            wavelength = None
        return loaded.exposure_row(exposure.band, exposure.epoch, wavelength)

    def _psf_outside_training(self, exposure, loaded) -> bool:
        """Whether the exposure's PSF FWHM in pixels lies more than :data:`PSF_RANGE_MARGIN` outside
        the model's training range (``LoadedModel.trained_psf_fwhm_px``); warns once per exposure."""
        span = loaded.trained_psf_fwhm_px
        if span is None:
            return False
        fwhm_px = float(exposure.psf_fwhm) / float(exposure.pixel_scale)
        lo, hi = span[0] / (1.0 + PSF_RANGE_MARGIN), span[1] * (1.0 + PSF_RANGE_MARGIN)
        if lo <= fwhm_px <= hi:
            return False
        key = (str(exposure.path), round(fwhm_px, 4))
        if key not in self._warned_psf:
            self._warned_psf.add(key)
            log.warning("%s: PSF FWHM %.2f px lies outside the %.2f-%.2f px the LUMOS model %s was trained on; its "
                        "targets are flagged PSF_EXTRAPOLATED (adapt the model to this survey's exposures: lumos adapt)",
                        exposure.path, fwhm_px, span[0], span[1], loaded.path)
        return True

    @staticmethod
    def _outside_training_ccd(ctx, ccd_shape: tuple[int, int]) -> np.ndarray:
        """Targets whose position (pixels) lies beyond the CCD (ny, nx) the model was trained on."""
        ny, nx = ccd_shape
        outside = (ctx.x > nx - 1) | (ctx.y > ny - 1)
        if outside.any():
            log.warning(
                "%s: %d of %d targets lie outside the %dx%d px CCD the LUMOS model was trained on; they are "
                "flagged CCD_EXTRAPOLATED (retrain on this CCD shape or use a model without the CCD position)",
                ctx.exposure.path, int(outside.sum()), ctx.n, ny, nx,
            )
        return outside
