"""Validated configuration of the TEAHUPOO training-set generator (paper §2.2)."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

from lumos_ops.constants import PIXEL_SCALE, STAMP_SIZE
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.population import COUNT_SLOPE
from lumos_ops.sim.star_truth import TRUTH_PSFS

__all__ = ["FluxSource", "TeahupooConfig", "SPLITS", "MISMATCH_FIELDS"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Values of the ``split`` column, in the order of :attr:`TeahupooConfig.split_fractions`."""

MISMATCH_FIELDS: tuple[str, ...] = ("psf_scale_range", "truth_psf_fwhm_scatter", "truth_psf_beta_range",
                                    "truth_r50_scatter", "knot_fraction", "knot_flux_range", "max_knots",
                                    "mismatch_fraction")
"""The :class:`TeahupooConfig` fields of the truth-model mismatch (:mod:`lumos_ops.sim.truth_mismatch`)."""


class FluxSource(str, enum.Enum):
    """Where the per-band flux of a simulated galaxy comes from.

    ``AUTO``: the catalogue row's ``flux_nJy_<band>`` column when the catalogue has it, else
    ``FLAT_SPECTRUM``. ``CATALOG``: that column (an error when missing). ``FLAT_SPECTRUM``: a
    constant-f_nu spectrum normalised to the row's ``i_auto``. ``BAND_DISTRIBUTION`` (paper §2.2,
    "we independently sample the galaxy flux from forty flux distributions, one per NB filter"):
    the ``flux_nJy_<band>`` value of *another*, independently drawn catalogue row, i.e. a draw from
    the catalogue's per-band flux distribution that is independent of the galaxy's shape and
    ``i_auto``, so a network cannot predict the flux from ``i_auto`` and must read the pixels.
    The flux density (nJy) becomes e-/s with the exposure's ``ZP`` (or the band's nominal zero
    point when the header has none) and is clipped to ``flux_range``. ``REFERENCE_PRIOR``: the
    flux (e-/s) is drawn from :class:`lumos_ops.flux_prior.ReferencePrior` (``flux_prior``),
    negative fluxes included, independently of the galaxy; training weights the loss so that the
    network learns the likelihood (docs/likelihood.md). ``flux_range`` is not applied.
    """

    AUTO = "auto"
    CATALOG = "catalog"
    FLAT_SPECTRUM = "flat_spectrum"
    BAND_DISTRIBUTION = "band_distribution"
    REFERENCE_PRIOR = "reference_prior"


@dataclasses.dataclass(frozen=True)
class TeahupooConfig:
    """What to generate.

    Attributes
    ----------
    n_stamps : int
        Number of stamps.
    stamp_size : int
        Stamp side (pixels): 60 for LUMOS training, e.g. 96 for held-out evaluation stamps that
        must hold a 45-pixel background annulus.
    shard_size : int
        Stamps per ``shards/shard-NNNNN.npy`` file (the last one may be shorter).
    seed : int
        Same seed and inputs => byte-identical output.
    split_fractions : (float, float, float)
        Fractions of ``train``, ``val`` and ``test`` stamps (sum 1); assignment is random.
    flux_range : (float, float)
        Clip range of the galaxy flux (e-/s); the paper uses 0-1000.
    flux_source : FluxSource
        See :class:`FluxSource`.
    edge_margin : int or None
        Smallest distance (pixels) of the stamp centre from the CCD edge; None = ``stamp_size // 2``
        (stamps entirely on the CCD).
    target_clearance : float or None
        None cuts backgrounds around any position. A number (pixels) cuts them only around
        positions at least that far from the exposure's own sources
        (:func:`lumos_ops.noise_calibration.source_clearance`), the rule ``lumos inject`` and
        ``lumos adapt`` place injected galaxies by. A catalogue target's centre holds its own
        light, not another source's; a background cut on a real source teaches the network to
        discount light that is not in the truth, and it then reads clear targets low.
    clearance_fraction : float
        With ``target_clearance``: the share of the stamps cut at clear positions (default 1, all);
        the others are cut around any position, on real sources as often as the exposure has them,
        so that the network also sees light at the centre that is not in the truth (real
        neighbours a catalogue misses). In [0, 1].
    subpixel_shifts : bool
        Uniform sub-pixel offsets dx, dy in [-0.5, 0.5) of the galaxy from the stamp centre.
    random_pa : bool
        Draw the position angle uniformly (True) or keep the catalogue row's ``pa``.
    pixel_scale : float
        arcsec / pixel of the exposures.
    default_psf_beta : float
        Moffat beta when an exposure header has no ``PSFBETA``.
    batch_size : int
        Galaxies rendered per renderer call.
    device : str or None
        Torch device of the renderer (``"cpu"``, ``"cuda"``); None = the renderer's default.
    threads : int
        Torch CPU threads while rendering. Byte-identical output needs the same seed, inputs,
        device and thread count (FFT rounding depends on the thread count).
    neighbour_fraction : float
        Fraction of stamps that get a second simulated galaxy (another catalogue row, its own
        band flux, Poisson noise) near the target, for blending studies (paper §5.3). The model
        channel holds the target only; ``meta.parquet`` records the neighbour.
    neighbour_distance : (float, float)
        Range (pixels) of the target-neighbour distance, drawn uniformly, at a uniform angle.
    flux_population : int
        With ``FluxSource.BAND_DISTRIBUTION`` only: 0 draws the per-band fluxes from the rows of
        the catalogue; N > 0 draws them from N galaxies of a seeded population
        (:func:`lumos_ops.sim.population.draw_galaxies`: same SEDs, redshifts and reddening as the
        survey simulator) whose i-band counts have slope ``flux_count_slope``. A large population
        gives continuous fluxes even from a small catalogue; slope 0 (uniform in i 17.5-23)
        balances the training set in brightness instead of starving it of bright fluxes.
    flux_count_slope : float
        d log10 N / dm of that population (default the survey's number counts).
    shape_population : int
        0 takes each stamp's galaxy shape (r50, Sersic n, q) and ``i_auto`` from a catalogue row;
        N > 0 from N galaxies of a seeded population (same size-magnitude relation as the survey
        simulator) with i-band count slope ``shape_count_slope``: slope 0 puts as many large,
        bright-i_auto galaxies in the training set as faint ones, where a survey catalogue holds
        a handful. Neighbours still come from the catalogue.
    shape_count_slope : float
        d log10 N / dm of the shape population.
    population_i_range : (float, float)
        i-band range (AB) of both populations; a range wider than the catalogue's keeps its
        brightest fluxes away from the edge of the training distribution.
    flux_prior : dict or None
        ``ReferencePrior`` fields for ``FluxSource.REFERENCE_PRIOR`` (None = the shipped
        ``REFERENCE_PRIOR``); ignored by the other flux sources.
    background_scale_range : (float, float)
        Each background cutout (e-/s, sky and real neighbours included) is multiplied by a factor
        drawn log-uniformly in this range before the galaxy is added, so that one set of exposures
        teaches the network noise levels of other exposure times and surveys; (1, 1) keeps the
        cutouts as they are.
    noise_texture_fraction : float
        Fraction of the stamps whose background noise is re-textured into spatially correlated
        noise of the same mean and per-pixel sigma (:mod:`lumos_ops.sim.noise_texture`), so that
        the network meets the noise textures of resampled and smoothed real frames; 0 (default)
        leaves every cutout as it is and the output identical to a generator without this option.
    noise_kernel_sigma_range : (float, float)
        Range (pixels) of the Gaussian sigma of the texture kernel, drawn uniformly per stamp.
    noise_resample_kernels : tuple of str
        Resampling kernels (``noise_texture.RESAMPLE_KERNELS``) the texture kernel is convolved
        with, one drawn uniformly per stamp, at a uniform sub-pixel shift in [0, 1) on each axis.
    psf_scale_range : (float, float)
        Factor on the exposure's PSF FWHM, drawn log-uniformly per stamp, for the galaxy, its
        model and its neighbour (:mod:`lumos_ops.sim.truth_mismatch`): PSF sizes beyond the
        exposures'; (1, 1) keeps them.
    truth_psf_fwhm_scatter : float
        Log-normal scatter of the simulated galaxy's PSF FWHM about its model's (the PSF
        measurement error); 0 = the same PSF width.
    truth_psf_beta_range : (float, float) or None
        Moffat beta of the simulated galaxy's PSF, uniform in this range, whatever the model's
        (the real PSF's profile is not the model's); None = the model's beta.
    truth_r50_scatter : float
        Log-normal scatter of the simulated galaxy's half-light radius about the catalogued one.
    knot_fraction : float
        Fraction of the stamps whose galaxy has part of its flux in point-like knots.
    knot_flux_range : (float, float)
        Share of such a galaxy's flux in its knots, drawn uniformly.
    max_knots : int
        Largest number of knots (1 to ``max_knots``, uniform).
    mismatch_fraction : float
        Fraction of the stamps whose galaxy gets the truth-model mismatch above (PSF width and
        profile, size, knots), drawn per stamp; the others are exactly their model channel, so that
        a network can learn to tell the two apart. 1 (default): every stamp. ``psf_scale_range``
        rescales both the galaxy and its model and applies to every stamp.
    sky_removed_range : (float, float)
        Fraction of each background cutout's median (its sky) subtracted, drawn uniformly per stamp:
        (0, 0) keeps the exposures' sky; (0, 1) mixes raw and sky-subtracted frames, so that the
        stamp's sky level no longer tells the network its noise (real frames come sky-subtracted or
        not, whatever their noise).
    truth_psf : {"model", "stars"}
        PSF of the pasted galaxies: ``model`` (default), the model channel's Moffat, so that each
        galaxy is exactly its model; ``stars``, each exposure's effective PSF built from its own
        stars (:mod:`lumos_ops.sim.star_truth`), the PSF the survey's galaxies have, while the model
        channel keeps the measurement's Moffat. Not with a truth-model mismatch.

    Every field of the truth-model mismatch left at its default gives the stamps the generator
    gave before the option existed (same draws, same pixels, same manifest).
    """

    n_stamps: int
    stamp_size: int = STAMP_SIZE
    shard_size: int = 4096
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    flux_range: tuple[float, float] = (0.0, 1000.0)
    flux_source: FluxSource = FluxSource.AUTO
    edge_margin: int | None = None
    target_clearance: float | None = None
    clearance_fraction: float = 1.0
    subpixel_shifts: bool = True
    random_pa: bool = True
    pixel_scale: float = PIXEL_SCALE
    default_psf_beta: float = 3.5
    batch_size: int = 512
    device: str | None = None
    threads: int = 1
    neighbour_fraction: float = 0.0
    neighbour_distance: tuple[float, float] = (2.0, 20.0)
    flux_population: int = 0
    flux_count_slope: float = COUNT_SLOPE
    shape_population: int = 0
    shape_count_slope: float = COUNT_SLOPE
    population_i_range: tuple[float, float] = (17.5, 23.0)
    flux_prior: dict[str, float] | None = None
    background_scale_range: tuple[float, float] = (1.0, 1.0)
    noise_texture_fraction: float = 0.0
    noise_kernel_sigma_range: tuple[float, float] = (0.0, 1.5)
    noise_resample_kernels: tuple[str, ...] = ("none", "bilinear", "lanczos3")
    psf_scale_range: tuple[float, float] = (1.0, 1.0)
    truth_psf_fwhm_scatter: float = 0.0
    truth_psf_beta_range: tuple[float, float] | None = None
    truth_r50_scatter: float = 0.0
    knot_fraction: float = 0.0
    knot_flux_range: tuple[float, float] = (0.05, 0.3)
    max_knots: int = 8
    mismatch_fraction: float = 1.0
    sky_removed_range: tuple[float, float] = (0.0, 0.0)
    truth_psf: str = "model"

    def __post_init__(self) -> None:
        for name in ("n_stamps", "stamp_size", "shard_size", "batch_size", "seed", "threads", "flux_population",
                     "shape_population"):
            value = getattr(self, name)
            low = 0 if name in ("seed", "flux_population", "shape_population") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LumosValueError(f"TeahupooConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.stamp_size < 8:
            raise LumosValueError(f"TeahupooConfig.stamp_size must be >= 8 pixels, got {self.stamp_size}")
        try:
            object.__setattr__(self, "flux_source", FluxSource(self.flux_source))
        except ValueError:
            raise LumosValueError(
                f"TeahupooConfig.flux_source must be one of {[s.value for s in FluxSource]}, got {self.flux_source!r}"
            ) from None
        fractions = tuple(float(f) for f in self.split_fractions)
        object.__setattr__(self, "split_fractions", fractions)
        if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
            raise LumosValueError(
                f"TeahupooConfig.split_fractions must be three non-negative fractions (train, val, test) summing to 1, got {fractions}"
            )
        low, high = (float(v) for v in self.flux_range)
        object.__setattr__(self, "flux_range", (low, high))
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
            raise LumosValueError(f"TeahupooConfig.flux_range must be (low, high) e-/s with 0 <= low < high, got {(low, high)}")
        if self.edge_margin is not None and (not isinstance(self.edge_margin, int) or self.edge_margin < 0):
            raise LumosValueError(f"TeahupooConfig.edge_margin must be an integer >= 0 or None, got {self.edge_margin!r}")
        if self.target_clearance is not None:
            clear = float(self.target_clearance)
            if not (math.isfinite(clear) and clear > 0.0):
                raise LumosValueError(
                    f"TeahupooConfig.target_clearance must be > 0 pixels or None, got {self.target_clearance!r}"
                )
            object.__setattr__(self, "target_clearance", clear)
        fraction = float(self.clearance_fraction)
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise LumosValueError(f"TeahupooConfig.clearance_fraction must be in [0, 1], got {self.clearance_fraction!r}")
        if fraction < 1.0 and self.target_clearance is None:
            raise LumosValueError("TeahupooConfig.clearance_fraction < 1 needs target_clearance (pixels); "
                                  "without it every stamp is cut around any position already")
        object.__setattr__(self, "clearance_fraction", fraction)
        if not (math.isfinite(self.neighbour_fraction) and 0.0 <= self.neighbour_fraction <= 1.0):
            raise LumosValueError(f"TeahupooConfig.neighbour_fraction must be in [0, 1], got {self.neighbour_fraction!r}")
        near, far = (float(v) for v in self.neighbour_distance)
        object.__setattr__(self, "neighbour_distance", (near, far))
        if not (0.0 <= near <= far and math.isfinite(far)):
            raise LumosValueError(
                f"TeahupooConfig.neighbour_distance must be (near, far) pixels with 0 <= near <= far, got {(near, far)}"
            )
        if self.flux_population and self.flux_source is not FluxSource.BAND_DISTRIBUTION:
            raise LumosValueError(
                "TeahupooConfig.flux_population needs flux_source='band_distribution' "
                f"(got {self.flux_source.value!r}); set flux_population=0 or change flux_source"
            )
        for name in ("flux_count_slope", "shape_count_slope"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise LumosValueError(f"TeahupooConfig.{name} must be in [0, 1], got {value!r}")
        lo_i, hi_i = (float(v) for v in self.population_i_range)
        object.__setattr__(self, "population_i_range", (lo_i, hi_i))
        if not (math.isfinite(lo_i) and math.isfinite(hi_i) and 10.0 <= lo_i < hi_i <= 30.0):
            raise LumosValueError(
                f"TeahupooConfig.population_i_range must be (bright, faint) AB mag within 10-30, got {(lo_i, hi_i)}"
            )
        if self.flux_prior is not None:
            from lumos_ops.flux_prior import ReferencePrior

            object.__setattr__(self, "flux_prior", ReferencePrior.from_dict({"kind": ReferencePrior.kind, **self.flux_prior}).to_dict())
        s_lo, s_hi = (float(v) for v in self.background_scale_range)
        object.__setattr__(self, "background_scale_range", (s_lo, s_hi))
        if not (math.isfinite(s_lo) and math.isfinite(s_hi) and 0.0 < s_lo <= s_hi):
            raise LumosValueError(
                f"TeahupooConfig.background_scale_range must be (low, high) with 0 < low <= high, got {(s_lo, s_hi)}"
            )
        self._check_noise_texture()
        self._check_mismatch()
        if self.truth_psf not in TRUTH_PSFS:
            raise LumosValueError(f"TeahupooConfig.truth_psf must be one of {TRUTH_PSFS}, got {self.truth_psf!r}")
        if self.truth_psf != "model" and self.truth_mismatch:
            raise LumosValueError("TeahupooConfig.truth_psf 'stars' draws the galaxies with the exposures' own PSF; "
                                  "a truth-model mismatch perturbs the model's: choose one")
        if not (math.isfinite(self.pixel_scale) and self.pixel_scale > 0):
            raise LumosValueError(f"TeahupooConfig.pixel_scale must be > 0 arcsec/pixel, got {self.pixel_scale!r}")
        if not (math.isfinite(self.default_psf_beta) and self.default_psf_beta > 1.5):
            raise LumosValueError(f"TeahupooConfig.default_psf_beta must be > 1.5, got {self.default_psf_beta!r}")

    def _check_noise_texture(self) -> None:
        from lumos_ops.sim.noise_texture import RESAMPLE_KERNELS

        if not (math.isfinite(self.noise_texture_fraction) and 0.0 <= self.noise_texture_fraction <= 1.0):
            raise LumosValueError(
                f"TeahupooConfig.noise_texture_fraction must be in [0, 1], got {self.noise_texture_fraction!r}"
            )
        k_lo, k_hi = (float(v) for v in self.noise_kernel_sigma_range)
        object.__setattr__(self, "noise_kernel_sigma_range", (k_lo, k_hi))
        if not (math.isfinite(k_hi) and 0.0 <= k_lo <= k_hi <= 10.0):
            raise LumosValueError(
                f"TeahupooConfig.noise_kernel_sigma_range must be (low, high) pixels with 0 <= low <= high <= 10, got {(k_lo, k_hi)}"
            )
        kinds = tuple(str(k) for k in self.noise_resample_kernels)
        object.__setattr__(self, "noise_resample_kernels", kinds)
        unknown = [k for k in kinds if k not in RESAMPLE_KERNELS]
        if not kinds or unknown:
            raise LumosValueError(
                f"TeahupooConfig.noise_resample_kernels must name some of {RESAMPLE_KERNELS}, got {kinds}"
            )

    def _check_mismatch(self) -> None:
        lo, hi = (float(v) for v in self.psf_scale_range)
        object.__setattr__(self, "psf_scale_range", (lo, hi))
        if not (math.isfinite(hi) and 0.0 < lo <= hi):
            raise LumosValueError(f"TeahupooConfig.psf_scale_range must be (low, high) with 0 < low <= high, got {(lo, hi)}")
        for name in ("truth_psf_fwhm_scatter", "truth_r50_scatter"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise LumosValueError(f"TeahupooConfig.{name} must be a log-normal sigma in [0, 1], got {value!r}")
        if self.truth_psf_beta_range is not None:
            b_lo, b_hi = (float(v) for v in self.truth_psf_beta_range)
            object.__setattr__(self, "truth_psf_beta_range", (b_lo, b_hi))
            if not (1.5 <= b_lo <= b_hi <= 10.0):
                raise LumosValueError(
                    f"TeahupooConfig.truth_psf_beta_range must be (low, high) Moffat beta within 1.5-10, got {(b_lo, b_hi)}"
                )
        if not (math.isfinite(self.knot_fraction) and 0.0 <= self.knot_fraction <= 1.0):
            raise LumosValueError(f"TeahupooConfig.knot_fraction must be in [0, 1], got {self.knot_fraction!r}")
        k_lo, k_hi = (float(v) for v in self.knot_flux_range)
        object.__setattr__(self, "knot_flux_range", (k_lo, k_hi))
        if not (0.0 <= k_lo <= k_hi < 1.0):
            raise LumosValueError(
                f"TeahupooConfig.knot_flux_range must be (low, high) flux shares with 0 <= low <= high < 1, got {(k_lo, k_hi)}"
            )
        if isinstance(self.max_knots, bool) or not isinstance(self.max_knots, int) or self.max_knots < 1:
            raise LumosValueError(f"TeahupooConfig.max_knots must be an integer >= 1, got {self.max_knots!r}")
        if not (math.isfinite(float(self.mismatch_fraction)) and 0.0 <= float(self.mismatch_fraction) <= 1.0):
            raise LumosValueError(f"TeahupooConfig.mismatch_fraction must be in [0, 1], got {self.mismatch_fraction!r}")
        object.__setattr__(self, "mismatch_fraction", float(self.mismatch_fraction))
        r_lo, r_hi = (float(v) for v in self.sky_removed_range)
        object.__setattr__(self, "sky_removed_range", (r_lo, r_hi))
        if not (0.0 <= r_lo <= r_hi <= 1.0):
            raise LumosValueError(
                f"TeahupooConfig.sky_removed_range must be (low, high) fractions with 0 <= low <= high <= 1, got {(r_lo, r_hi)}"
            )

    @property
    def truth_mismatch(self) -> bool:
        """Whether the simulated galaxy differs from its model channel or the PSF is rescaled
        (:mod:`lumos_ops.sim.truth_mismatch`)."""
        return (self.psf_scale_range != (1.0, 1.0) or self.truth_psf_fwhm_scatter > 0.0
                or self.truth_psf_beta_range is not None or self.truth_r50_scatter > 0.0 or self.knot_fraction > 0.0)

    @property
    def noise_texture(self) -> bool:
        """Whether some stamps get a re-textured background (``noise_texture_fraction > 0``)."""
        return self.noise_texture_fraction > 0.0

    @property
    def reference_prior(self):
        """The :class:`~lumos_ops.flux_prior.ReferencePrior` of ``FluxSource.REFERENCE_PRIOR`` (else None)."""
        if self.flux_source is not FluxSource.REFERENCE_PRIOR:
            return None
        from lumos_ops.flux_prior import REFERENCE_PRIOR, ReferencePrior

        return REFERENCE_PRIOR if self.flux_prior is None else ReferencePrior.from_dict(self.flux_prior)

    @property
    def margin(self) -> int:
        """Effective edge margin (pixels)."""
        return self.stamp_size // 2 if self.edge_margin is None else self.edge_margin

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; without the ``noise_*`` fields when the noise texture is off, so
        that a set made without it keeps the manifest it had before the option existed."""
        values = dataclasses.asdict(self)
        values["flux_source"] = self.flux_source.value
        if not self.noise_texture:
            for name in ("noise_texture_fraction", "noise_kernel_sigma_range", "noise_resample_kernels"):
                del values[name]
        if not self.truth_mismatch:
            for name in MISMATCH_FIELDS:
                del values[name]
        elif self.mismatch_fraction == 1.0:
            del values["mismatch_fraction"]
        if self.sky_removed_range == (0.0, 0.0):
            del values["sky_removed_range"]
        if self.clearance_fraction == 1.0:
            del values["clearance_fraction"]
        if self.truth_psf == "model":
            del values["truth_psf"]
        return json.loads(json.dumps(values))
