"""Measurement quality flags, a bit mask stored in every output row as ``flag``.

A flag never hides a measurement: the flux is still reported when it can be computed, and the
flag tells the user why it may be unreliable. ``OFF_IMAGE`` rows have ``flux = NaN``.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Flag", "describe_flags"]


class Flag(enum.IntFlag):
    """Bits of the ``flag`` column (combine with ``|``, test with ``&``)."""

    NONE = 0
    EDGE = 1
    """The 60x60 stamp or the aperture crosses the CCD edge; missing pixels were padded."""
    OFF_IMAGE = 2
    """The target centre lies outside the image: nothing measured (flux NaN)."""
    MASKED = 4
    """Masked pixels (NaN, bad columns) inside the aperture or the stamp centre."""
    SATURATED = 8
    """Pixels at or above the header SATURATE level inside the aperture."""
    ANNULUS_INCOMPLETE = 16
    """Fewer than half of the background-annulus pixels are usable (edge, masks, clipping)."""
    FIT_FAILED = 32
    """An iterative estimator (profile fit) did not converge; the flux is its last iterate."""
    BAD_PROFILE = 64
    """Catalogue shape parameters were out of range and were clipped before rendering."""
    NEGATIVE_MODEL = 128
    """The estimated flux is negative (allowed for faint sources, flagged for users)."""
    CCD_EXTRAPOLATED = 256
    """LUMOS only: the target lies outside the CCD area the model was trained on (its
    ``normalization.ccd_shape``), so the CCD-position input was extrapolated; retrain on this
    camera's CCD shape or use a model without the CCD position."""
    UNTRAINED_BAND = 512
    """LUMOS only: the model was never trained on this band x camera epoch (its embedding row kept
    its random initial value), so the PDF is not calibrated; train or transfer-learn on the band."""
    PRIOR_EDGE = 1024
    """LUMOS only: the likelihood's 84th percentile reaches the top 5 % of the reference prior's
    range (``flux_prior.high``, e-/s): the network never saw brighter fluxes, so the estimate is
    biased low; use a classical method for this target."""
    BLENDED = 2048
    """A catalogued neighbour's model overlaps this target's: both were fitted jointly and the
    neighbour's fitted light taken out of the target's stamp (``lumos_ops.photometry.neighbours``);
    set where that fit's flux variance exceeds the isolated target's by more than 10 %, whose
    errors include it, or where the two models cannot be told apart (not fitted)."""
    PSF_EXTRAPOLATED = 4096
    """LUMOS only: the exposure's PSF FWHM in pixels lies more than 10 % outside the range of the
    model's training stamps (``LoadedModel.trained_psf_fwhm_px``): the network reads a PSF size it
    never saw (an undersampled or a much finer-sampled camera); adapt the model to the survey
    (``lumos adapt``)."""


def describe_flags(value: int | np.integer) -> list[str]:
    """Names of the bits set in ``value``, e.g. ``describe_flags(9) == ['EDGE', 'SATURATED']``."""
    value = int(value)
    return [f.name for f in Flag if f.value and value & f.value and f.name is not None]
