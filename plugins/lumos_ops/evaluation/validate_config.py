"""Options of ``lumos validate`` (:func:`lumos_ops.evaluation.validate.validate`), checked when built."""

from __future__ import annotations

import dataclasses

from lumos_ops.exceptions import LumosValueError

__all__ = ["ValidateConfig", "MIN_STAMPS", "ESTIMATORS", "BINNINGS", "DEBLEND_FLUXES", "BASELINE_MIN_SIZE"]

BASELINE_MIN_SIZE = 93
"""Smallest stamp side (pixels) on which the classical baselines have their whole 45 px annulus."""
MIN_STAMPS = 10_000
"""Smallest number of evaluation stamps accepted as evidence."""
BINNINGS = ("i_auto", "band_mag")
"""Magnitudes the report bins in: ``i_auto`` or the AB magnitude of the true band flux."""
ESTIMATORS = {"median": "median", "mean": "mean", "mode": "mode"}
"""Point estimates of the PDF that ``lumos validate`` can score, and their column in the LUMOS table."""
DEBLEND_FLUXES = ("test_set", "catalog")
"""Choices of the deblending targets' band fluxes (:data:`~lumos_ops.evaluation.report_notes.DEBLEND_TARGETS_MEANING`)."""


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """Options of :func:`validate`.

    Attributes
    ----------
    baselines : tuple of str
        Keys of :data:`lumos_ops.evaluation.stamp_photometry.STAMP_METHODS` to compare with.
    split : str
        Split of the test set (``"all"``, the default, for every stamp: a held-out set).
    max_stamps : int or None
        Use the first N stamps of the split.
    min_stamps : int
        Refuse fewer stamps than this (default :data:`MIN_STAMPS`).
    binning : str
        Magnitude of the bins of the targets: ``"i_auto"`` (default, as in the paper's Fig. 7) or
        ``"band_mag"`` (AB magnitude of the true band flux); the report also holds the other.
    estimator : str
        Point estimate of the PDF scored as ``"lumos"`` in the targets and the deblending test:
        ``"median"`` (default; the bias of eq. 17 is a median, and the PDF median is the estimate
        whose relative error has zero median in any bin of observed quantities, such as i_auto,
        when the PDFs are calibrated), ``"mean"`` (eq. 15) or ``"mode"`` (the peak, the paper's
        choice for photo-z). The report holds all three as ``lumos_mean``, ``lumos_median`` and
        ``lumos_peak``.
    no_ccd_model : str or None
        A checkpoint trained without the CCD position (``--drop-input ccd_x ccd_y``) whose PIT
        is compared with the main model's (Fig. 6).
    deblend_stamps : int
        Stamps of the Fig. 8-9 deblending test (needs the survey exposures); 0 = skip.
    deblend_fluxes : tuple of str
        Band fluxes of the deblending targets, one test per entry; the first is scored by the
        targets table (``report["deblending"]``), the others go to ``report["deblending_other"]``.
        ``"test_set"``: drawn as the test set's fluxes (its ``TeahupooConfig`` flux fields; with
        ``band_distribution`` a TEAHUPOO target as in the paper, shape at i = 22 and a band flux
        independent of the galaxy, so that the isolated control is unbiased for a calibrated PDF;
        a test set that draws from the catalogue rows, ``flux_population=0``, gives draws from the
        catalogue rescaled to i = 22 instead);
        ``"catalog"``: each target's own catalogue SED at i = 22 (the isolated control then also
        measures how far the training flux prior sits from the fluxes of i = 22 galaxies).
    seed : int
        Seed of the deblending stamps.
    batch_size : int
        Stamps per network batch.
    device : str or None
        Torch device of the models (None: CUDA when available, else CPU).
    progress : bool
        Progress bars.
    """

    baselines: tuple[str, ...] = ("aperture", "optimal")
    split: str = "all"
    max_stamps: int | None = None
    min_stamps: int = MIN_STAMPS
    binning: str = "i_auto"
    estimator: str = "median"
    no_ccd_model: str | None = None
    deblend_stamps: int = 4000
    deblend_fluxes: tuple[str, ...] = ("test_set", "catalog")
    seed: int = 5
    batch_size: int = 1024
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test", "all"):
            raise LumosValueError(f"split must be train, val, test or all, got {self.split!r}")
        if self.batch_size < 1 or (self.max_stamps is not None and self.max_stamps < 1):
            raise LumosValueError("batch_size and max_stamps must be >= 1")
        if self.min_stamps < 0 or self.deblend_stamps < 0:
            raise LumosValueError("min_stamps and deblend_stamps must be >= 0")
        if self.binning not in BINNINGS:
            raise LumosValueError(f"binning must be one of {BINNINGS}, got {self.binning!r}")
        if not self.deblend_fluxes or any(f not in DEBLEND_FLUXES for f in self.deblend_fluxes):
            raise LumosValueError(f"deblend_fluxes must be one or more of {DEBLEND_FLUXES}, got {self.deblend_fluxes!r}")
        if self.estimator not in ESTIMATORS:
            raise LumosValueError(f"estimator must be one of {tuple(ESTIMATORS)}, got {self.estimator!r}")
