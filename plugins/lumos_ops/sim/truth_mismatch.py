"""Truth-model mismatch for TEAHUPOO stamps: the galaxy in the pixels is not the catalogued model.

On a survey's real frames the catalogue's Sérsic model (the network's model channel) is only an
approximation of what is in the pixels: the real PSF is not the Moffat profile the model is drawn
with (atmospheric turbulence gives Kolmogorov-like wings; optics add more), its width is measured
with an error, the catalogue's half-light radius is an estimate, and star-forming galaxies carry
compact knots no Sérsic profile has. A network trained only on stamps whose galaxy *is* its model
learns to trust the model channel completely and scatters (and is overconfident) far beyond the
optimal weighted sum when the two differ. Here the simulated galaxy (the truth) is drawn from the
model with seeded perturbations, while the model channel stays the catalogued Sérsic profile:

* ``psf_scale``: the exposure's PSF FWHM times a factor drawn log-uniformly in
  ``TeahupooConfig.psf_scale_range``, in both the truth and the model (PSF sizes of other surveys
  and seeing conditions than the exposures');
* ``truth_psf_fwhm``: the truth's PSF FWHM (arcsec) is the model's times ``exp(N(0, s))``,
  ``s = truth_psf_fwhm_scatter`` (the PSF measurement error);
* ``truth_psf_beta``: the truth's Moffat beta, uniform in ``truth_psf_beta_range`` (a Kolmogorov
  PSF's core is fitted by beta ~ 4.8; its wings fall as a beta ~ 1.8 Moffat), whatever the model's;
* ``truth_r50``: the truth's half-light radius (arcsec) is the catalogue's times ``exp(N(0, s))``,
  ``s = truth_r50_scatter``;
* knots: on a fraction ``knot_fraction`` of the stamps, a share of the flux uniform in
  ``knot_flux_range`` moves from the Sérsic profile into 1 to ``max_knots`` point sources (unresolved
  star-forming regions) scattered around the centre with a
  Gaussian of width 0.8 r50 along the galaxy's axes (sheared by ``q``, rotated by ``pa``), with
  Dirichlet(1) shares.

The truth's total flux is the stamp's ``flux`` (e-/s), as for every other stamp. All draws come from
seed stream 19, so a configuration without mismatch gives exactly the stamps it gave before.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["MismatchDraws", "draw_mismatch", "render_truth", "KNOT_SPREAD", "MISMATCH_META_COLUMNS", "TRUTH_MISMATCH"]

KNOT_SPREAD: float = 0.8
"""Standard deviation of the knot positions, in units of the galaxy's half-light radius, per axis."""

TRUTH_MISMATCH: dict[str, float | tuple[float, float]] = {
    "psf_scale_range": (0.6, 1.6), "truth_psf_fwhm_scatter": 0.05, "truth_psf_beta_range": (2.0, 6.0),
    "truth_r50_scatter": 0.1, "knot_fraction": 0.3, "knot_flux_range": (0.05, 0.3),
}
"""The mismatch of recipe ``fast-v11-mismatch`` and of ``lumos adapt --truth-mismatch`` (``TeahupooConfig``
fields): PSF FWHM x 0.6-1.6, the galaxy's PSF beta 2-6 and width scattered by 5 %, its half-light radius
by 10 %, knots holding 5-30 % of the flux on 30 % of the galaxies."""

MISMATCH_META_COLUMNS: tuple[str, ...] = ("truth_psf_fwhm", "truth_psf_beta", "truth_r50", "knot_flux_frac",
                                          "n_knots")
"""``meta.parquet`` columns written with a truth-model mismatch: the truth's PSF FWHM (arcsec) and Moffat
beta, its Sérsic half-light radius (arcsec), the share of its flux in knots and their number."""


@dataclasses.dataclass(frozen=True)
class MismatchDraws:
    """Per-stamp mismatch draws (arrays over all ``n_stamps``; ``K = max_knots``).

    Attributes
    ----------
    psf_scale : (n,) array
        Factor on the exposure's PSF FWHM, for the truth and the model.
    fwhm_factor : (n,) array
        Truth PSF FWHM / model PSF FWHM.
    beta : (n,) array
        Truth Moffat beta; NaN = the model's.
    r50_factor : (n,) array
        Truth half-light radius / catalogued one.
    knot_frac : (n,) array
        Share of the flux in knots (0 = none).
    knot_uv : (n, K, 2) array
        Knot offsets along the galaxy's major and minor axes, in units of the half-light radius
        (before the axis-ratio shear).
    knot_share : (n, K) array
        Each knot's share of ``knot_frac`` (sums to 1 over the stamp's knots; 0 for unused slots).
    """

    psf_scale: np.ndarray
    fwhm_factor: np.ndarray
    beta: np.ndarray
    r50_factor: np.ndarray
    knot_frac: np.ndarray
    knot_uv: np.ndarray
    knot_share: np.ndarray

    @property
    def n_knots(self) -> np.ndarray:
        """Number of knots per stamp."""
        return (self.knot_share > 0).sum(axis=1)


def draw_mismatch(config, n: int) -> MismatchDraws:
    """The mismatch draws of ``n`` stamps under ``config`` (a ``TeahupooConfig``; seed stream 19).

    With ``config.mismatch_fraction`` below 1, a stamp drawn (seed stream 23) outside that fraction keeps
    its model's PSF width and profile, size and no knots: its galaxy is exactly its model channel
    (``psf_scale`` still applies to both). The other stamps' draws are those of a fraction of 1."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 19]))
    s_lo, s_hi = config.psf_scale_range
    psf_scale = np.exp(rng.uniform(np.log(s_lo), np.log(s_hi), size=n))
    fwhm_factor = np.exp(rng.normal(0.0, 1.0, size=n) * config.truth_psf_fwhm_scatter)
    if config.truth_psf_beta_range is None:
        beta = np.full(n, np.nan)
    else:
        beta = rng.uniform(*config.truth_psf_beta_range, size=n)
    r50_factor = np.exp(rng.normal(0.0, 1.0, size=n) * config.truth_r50_scatter)
    k = config.max_knots
    has_knots = rng.uniform(size=n) < config.knot_fraction
    knot_frac = np.where(has_knots, rng.uniform(*config.knot_flux_range, size=n), 0.0)
    count = rng.integers(1, k + 1, size=n)
    shares = rng.exponential(size=(n, k)) * (np.arange(k)[None, :] < count[:, None])
    shares = np.where(has_knots[:, None], shares / shares.sum(axis=1, keepdims=True), 0.0)
    knot_uv = rng.normal(0.0, KNOT_SPREAD, size=(n, k, 2))
    if config.mismatch_fraction < 1.0:
        exact = np.random.default_rng(np.random.SeedSequence([config.seed, 23])).uniform(size=n) >= config.mismatch_fraction
        fwhm_factor[exact] = 1.0
        beta[exact] = np.nan
        r50_factor[exact] = 1.0
        knot_frac[exact] = 0.0
        shares[exact] = 0.0
    return MismatchDraws(psf_scale=psf_scale, fwhm_factor=fwhm_factor, beta=beta, r50_factor=r50_factor,
                         knot_frac=knot_frac, knot_uv=knot_uv, knot_share=shares)


def render_truth(draws: MismatchDraws, sel: np.ndarray, *, r50: np.ndarray, sersic_n: np.ndarray, q: np.ndarray,
                 pa: np.ndarray, dx: np.ndarray, dy: np.ndarray, model_fwhm: np.ndarray, model_beta: float,
                 size: int, pixel_scale: float, device: str | None) -> np.ndarray:
    """Unit-flux truth images (float64, shape (len(sel), size, size)) of stamps ``sel``.

    ``r50`` (arcsec), ``sersic_n``, ``q``, ``pa`` (degrees), ``dx``, ``dy`` (pixels) are the catalogued
    model's, ``model_fwhm`` (arcsec) its PSF FWHM per stamp (scale included) and ``model_beta`` its
    Moffat beta; the perturbations are ``draws``' rows ``sel``.
    """
    from lumos_ops.render import render_galaxies, render_point_sources

    fwhm = model_fwhm * draws.fwhm_factor[sel]
    beta = np.where(np.isnan(draws.beta[sel]), model_beta, draws.beta[sel])
    knot_frac = draws.knot_frac[sel]
    truth = np.asarray(render_galaxies(
        r50=r50 * draws.r50_factor[sel], sersic_n=sersic_n, q=q, pa=pa, psf_fwhm=fwhm, psf_beta=beta,
        dx=dx, dy=dy, flux=1.0 - knot_frac, size=size, pixel_scale=pixel_scale, device=device,
    ).images, dtype=np.float64)
    stamp, slot = np.nonzero(draws.knot_share[sel] > 0)
    if len(stamp) == 0:
        return truth
    radius = (r50 * draws.r50_factor[sel])[stamp] / pixel_scale
    u = draws.knot_uv[sel][stamp, slot, 0] * radius / np.sqrt(q[stamp])
    v = draws.knot_uv[sel][stamp, slot, 1] * radius * np.sqrt(q[stamp])
    angle = np.deg2rad(pa[stamp])
    reach = size / 2.0 - 6.0
    ox = np.clip(u * np.cos(angle) - v * np.sin(angle), -reach, reach)
    oy = np.clip(u * np.sin(angle) + v * np.cos(angle), -reach, reach)
    knots = np.asarray(render_point_sources(
        psf_fwhm=fwhm[stamp], psf_beta=beta[stamp],
        dx=dx[stamp] + ox, dy=dy[stamp] + oy, flux=knot_frac[stamp] * draws.knot_share[sel][stamp, slot],
        size=size, pixel_scale=pixel_scale, device=device,
    ).images, dtype=np.float64)
    np.add.at(truth, stamp, knots)
    return truth
