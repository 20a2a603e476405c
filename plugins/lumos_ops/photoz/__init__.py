"""Photometric redshifts and colour-histogram validation of narrow-band photometry.

* :func:`fit_photoz` — template-fitting photo-z (simplified BCNZ2) on the survey simulator's
  redshifted CWW templates (:func:`build_template_grid`), optional :class:`MagnitudePrior`.
* :func:`photoz_metrics`, :func:`binned_photoz_metrics` — sigma68, NMAD, outlier fraction and bias
  of ``(z_phot - z_spec) / (1 + z_spec)``, per i_auto bin and for the best X % by quality.
* :func:`colour_width`, :func:`compare_colour_widths` — sigma68 / sigma95 of NB colour histograms
  (paper §6.1.2); :func:`colour_widths_from_files` for co-add tables.
* :func:`run_photoz`, :func:`validate_photoz` — the file-level steps behind ``lumos photoz``;
  :mod:`~lumos_ops.photoz.coadd_check` — the same validation of one method's co-adds for the
  database check (``lumos_ops.pipeline.photoz_check``).
"""

from lumos_ops.photoz.colour_report import colour_widths_from_files
from lumos_ops.photoz.colours import ColourKind, ColourWidth, colour, colour_width, compare_colour_widths
from lumos_ops.photoz.fit import RESULT_COLUMNS, PhotozConfig, PhotozResult, fit_photoz
from lumos_ops.photoz.metrics import (
    PAUS_OUTLIER_THRESHOLD,
    best_fraction_mask,
    binned_photoz_metrics,
    delta_z,
    nmad,
    photoz_metrics,
)
from lumos_ops.photoz.prior import MagnitudePrior
from lumos_ops.photoz.report import validate_photoz
from lumos_ops.photoz.run import run_photoz
from lumos_ops.photoz.tables import CoaddFluxes, pivot_coadds, read_coadds
from lumos_ops.photoz.templates import TemplateGrid, TemplateGridConfig, build_template_grid

__all__ = [
    "PAUS_OUTLIER_THRESHOLD",
    "RESULT_COLUMNS",
    "CoaddFluxes",
    "ColourKind",
    "ColourWidth",
    "MagnitudePrior",
    "PhotozConfig",
    "PhotozResult",
    "TemplateGrid",
    "TemplateGridConfig",
    "best_fraction_mask",
    "binned_photoz_metrics",
    "build_template_grid",
    "colour",
    "colour_width",
    "colour_widths_from_files",
    "compare_colour_widths",
    "delta_z",
    "fit_photoz",
    "nmad",
    "photoz_metrics",
    "pivot_coadds",
    "read_coadds",
    "run_photoz",
    "validate_photoz",
]
