"""Classical forced photometry: the baselines LUMOS is compared with (paper §3).

One module per concept:

* :mod:`~lumos_ops.photometry.overlap` - exact pixel / ellipse overlap areas;
* :mod:`~lumos_ops.photometry.background` - sigma-clipped 30-45 px background annulus;
* :mod:`~lumos_ops.photometry.inputs` - data and model cutouts on one grid (:class:`PhotometryInputs`);
* :mod:`~lumos_ops.photometry.aperture` - PAUS elliptical aperture holding 62.5 % of the model light;
* :mod:`~lumos_ops.photometry.neldermead` - batched 1-D Nelder-Mead;
* :mod:`~lumos_ops.photometry.modelfit` - Poisson chi-square profile fit (eq. 3);
* :mod:`~lumos_ops.photometry.optimal` - optimal weighted pixel sum (eq. 5-6);
* :mod:`~lumos_ops.photometry.quality` - flags shared by the estimators.

The registry classes (``AperturePhotometry``, ``ProfileFit``, ``OptimalWeightedSum``) measure a
:class:`lumos_ops.target_context.TargetContext`; the functions measure :class:`PhotometryInputs` directly.
"""

from lumos_ops.photometry.aperture import AperturePhotometry, aperture_radius, elliptical_aperture_photometry
from lumos_ops.photometry.background import AnnulusBackground, annulus_background
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.modelfit import ProfileFit, profile_fit_photometry
from lumos_ops.photometry.optimal import OptimalWeightedSum, optimal_photometry
from lumos_ops.photometry.overlap import ellipse_pixel_overlap

__all__ = [
    "AperturePhotometry",
    "ProfileFit",
    "OptimalWeightedSum",
    "PhotometryInputs",
    "AnnulusBackground",
    "annulus_background",
    "aperture_radius",
    "elliptical_aperture_photometry",
    "profile_fit_photometry",
    "optimal_photometry",
    "ellipse_pixel_overlap",
]
