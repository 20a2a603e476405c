"""The sentences that ``lumos validate`` writes next to its numbers, so that a report reads alone.

Kept here as named constants, out of the code that computes the report, and written into
``validation.json`` verbatim.
"""

from __future__ import annotations

__all__ = [
    "FLUX_SOURCE_MEANING",
    "DEBLEND_TARGETS_MEANING",
    "DEBLEND_EXCESS_MEANING",
    "TRUE_SNR_MEANING",
    "PRIOR_ONLY_MEANING",
    "BAYES_OPTIMAL_MEANING",
    "estimator_meaning",
]

_OWN_SED = "realistic: each galaxy's own SED flux from the survey catalogue (flux tracks i_auto)"

FLUX_SOURCE_MEANING: dict[str, str] = {
    "band_distribution": "paper §2.2: each stamp's flux drawn independently of the galaxy (and of i_auto) "
                         "from a flux distribution of its band",
    "catalog": _OWN_SED,
    "auto": _OWN_SED,
    "flat_spectrum": "a flat f_nu spectrum at the galaxy's i_auto (flux tracks i_auto)",
}
"""What each ``TeahupooConfig.flux_source`` of a test set means for its stamps' fluxes."""

DEBLEND_TARGETS_MEANING: dict[str, str] = {
    "test_set": "target band fluxes drawn as the test set's (a TEAHUPOO target when the test set draws them "
                "independently of the galaxy, as in the paper)",
    "catalog": "each target's own catalogue SED at i = 22",
}
"""What each choice of ``ValidateConfig.deblend_fluxes`` gives the deblending targets."""

DEBLEND_EXCESS_MEANING = ("median of (f_with - f_without) / f0 over the same targets, backgrounds and positions "
                          "measured with and without the neighbour: the bias the neighbour causes")
"""How ``excess_by_distance`` of the deblending test is computed."""

TRUE_SNR_MEANING = "f0 / Cramer-Rao error of the stamp's unit-flux model and robust pixel noise"
"""How the true SNR of the fixed-truth bins is computed."""

PRIOR_ONLY_MEANING = "per-band power law log10 f = a + b i_auto, two-fold cross-fitted on these stamps (no pixels)"
"""The ``prior_only`` method (:mod:`lumos_ops.evaluation.prior_only`)."""

BAYES_OPTIMAL_MEANING = ("information reference: posterior median of the optimal weighted sum's calibrated Gaussian "
                         "likelihood times the band's true flux distribution, two-fold cross-fitted "
                         "(lumos_ops.evaluation.bayes_reference)")
"""The ``bayes_optimal`` method (:mod:`lumos_ops.evaluation.bayes_reference`)."""


def estimator_meaning(estimator: str, column: str) -> str:
    """What the method ``lumos`` of a report is: the PDF ``estimator``, read from ``column``."""
    return (f"'lumos' is the PDF {estimator} (column {column!r} of "
            "lumos measure); lumos_mean, lumos_median and lumos_peak are the three point estimates")
