"""Adapt LUMOS to a survey's own exposures and validate it by injection-recovery (``lumos adapt``).

:func:`adapt` runs six stages under one output directory; each writes its result before the next
starts, so an interrupted run called again with the same ``out_dir`` continues where it stopped:

1. **split** (``split.json``): the exposures are grouped by exposure (``EXPNUM``, else one group
   per file: the CCDs of one exposure stay together) and, per band, a seeded random
   ``holdout`` fraction of the groups is held out (at least one per band with two or more
   groups). Training and held-out sets are disjoint.
2. **pixel noise** (``noise.json``): the blank-sky pixel noise (e-/s) of every training exposure,
   sources masked (:func:`exposure_pixel_noise`), their median over the base model's training
   pixel noise ``Normalization.pixel_scale`` giving the factor ``s`` (:class:`NoiseScale`). The
   candidate's normalisation (``pixel_scale``, ``background_mean``, ``background_std``,
   ``flux_scale``) and reference prior (``low``, ``high``, ``asinh_scale``) are the base model's
   times ``s``, so that the network sees the survey's stamps in the noise units it was trained in
   and the prior spans the same number of noise sigmas (``rescale="prior"`` scales only the prior,
   ``rescale="none"`` keeps ``s = 1``).
3. **training set** (``teahupoo/``): TEAHUPOO stamps (paper §2.2) on the training exposures' real
   backgrounds, for every band x camera epoch present, with fluxes from the candidate's reference
   prior (:class:`lumos_ops.flux_prior.ReferencePrior`: the network learns the likelihood,
   docs/likelihood.md §2), galaxy shapes from the catalogue, catalogue neighbours on a fraction
   of the stamps and background cutouts scaled log-uniformly (noise-level augmentation). The
   backgrounds are cut around positions ``min_clearance`` px clear of the exposures' own sources,
   the injection's placement rule (``clear_training_positions``).
4. **fine-tuning** (``train/``, then ``model.pt``): from the base model's weights, with the
   rescaled normalisation, all layers (or only the last, ``train_layers="last"``) with the
   importance-weighted eq. (8) loss and the BatchNorm running statistics of the base model kept
   (its layers in eval mode, their affine weights learnt: the shipped models end their training
   that way, and per-batch statistics would change the function the base model computes); where a galaxy of the catalogue is observed on two training
   exposures in one band, eq. (12) adds ``pair_weight`` x the eq. (11) overlap of their two
   likelihoods. Every epoch writes ``train/train_state.pt``; a rerun continues from the last one.
5. **error floors** (``floor/``, ``error_floor.json``, ``survey.json``; ``measure_error_floor``):
   the candidate measures new GalSim galaxies injected into the *training* exposures (Sérsic, and
   blended pairs when the report holds them); the fractional floor its rows at measured SNR >= 50
   ask for (:func:`lumos_ops.photometry.error_floor.estimate_error_floor`: the PSF and catalogue
   models' error on this survey, which no pixel-noise model holds; the galaxies are drawn at true
   SNR ``floor_snr_range``, 50-150 by default, so that nearly all of them count), and the neighbour floor of
   its blended rows, become the survey's ``flux_error_floor`` and ``neighbour_error_floor`` for
   the next stage and for the survey file ``survey.json`` the nightly run should use; each
   classical method measured on the same galaxies gets its own (``method_error_floors``,
   ``method_neighbour_error_floors``). Fewer than 30 bright rows keep the survey's floor. The
   held-out exposures stay unseen by every choice.
6. **injection-recovery** (``injection/``, ``injection_report.json``, ``injection_report.png``):
   GalSim galaxies with the catalogue's shapes and a log-uniform true SNR are injected into the
   held-out exposures, keeping their headers, and measured through ``read_exposure`` ->
   ``measure_exposure`` (the nightly code path, blank-sky error calibration and the floors of
   stage 5 included) by the base model, the candidate and every classical method. The same seed injects the same galaxies into
   the same pixels for both models. The populations of ``shared_error_populations`` that the
   report does not hold are injected for the candidate alone: they only measure its shared-error
   term.

The report is :func:`lumos_ops.evaluation.injection_report.score_injection` of the candidate with
the classical methods (the registry's gates read it, docs/registry.md), plus ``base`` (the base
model's LUMOS entries), ``bands`` (the same per band) and ``adapt`` (split, pixel noise, training,
timings, ``error_floor``: stage 5's measurement and the floors applied). The candidate's checkpoint records the pixel noise and ``s`` in ``metadata["pixel_noise"]``,
and, measured on its held-out injection, the part of the error that the exposures of one galaxy
share (``metadata["shared_error"]``, :mod:`lumos_ops.lumos.shared_error`), which widens its co-adds.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.constants import INJECTION_SEPARATION_PX
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.atomic import replace_atomically
from lumos_ops.lumos.shared_error import SHARED_ERROR_POPULATIONS

__all__ = ["AdaptConfig", "AdaptResult", "NoiseScale", "adapt", "exposure_pixel_noise", "find_exposures",
           "measure_noise_scale", "split_exposures", "CLASSICAL_METHODS", "RESCALES"]

log = logging.getLogger(__name__)

RESCALES: tuple[str, ...] = ("all", "prior", "none")
"""What ``AdaptConfig.rescale`` may scale by the survey's pixel noise: normalisation and prior, the
prior alone, or nothing."""

CLASSICAL_METHODS: tuple[str, ...] = ("aperture", "modelfit", "optimal")
"""The classical photometry methods the injection measures besides LUMOS."""

_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fits.bz2", ".fits.fz")


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """Options of :func:`adapt`.

    Attributes
    ----------
    holdout : float
        Fraction of each band's exposures held out for the injection (0-1).
    n_stamps : int
        TEAHUPOO stamps (training and validation). The defaults (60,000 stamps; 14 epochs, lr 3e-4
        divided by 10 after 10) are the schedule that met six of the eight fixed-truth targets on
        held-out real SDSS sub-frames (reports/adapt/heldout/README.md); 8 epochs of as many stamps
        met two. About 45 min on one CPU thread.
    val_fraction : float
        Share of the stamps used for validation (the best epoch's weights are kept).
    epochs, batch_size : int
    lr : float
        Adam learning rate of the fine-tuning (StepLR: divided by ``1 / lr_gamma`` every ``lr_step`` epochs).
    lr_step : int
    lr_gamma : float
    train_layers : str
        ``"all"`` (default) or ``"last"`` (only the output layer; BatchNorm statistics kept).
    pair_weight : float
        Weight of the eq. (11) pair term (eq. 12); 0 disables it.
    max_pairs : int
        At most this many pairs.
    default_zero_point : float or None
        AB zero point for pairs on exposures without ``ZP`` (None: such exposures give no pairs).
    neighbour_fraction : float
        Stamps with an added catalogue neighbour at 2-20 px.
    background_scale_range : (float, float)
        Log-uniform factor of each background cutout (noise-level augmentation).
    rescale : {"all", "prior", "none"}
        ``"all"``: give the candidate the base model's normalisation and reference prior times the
        ratio ``s`` of the training exposures' pixel noise to the base model's training pixel noise
        (module notes); ``"prior"``: the prior's range times ``s``, the normalisation kept (the
        network reads the survey's stamps in the base model's pixel units, and the prior still
        reaches the survey's bright fluxes); ``"none"``: both kept. The noise is measured and
        recorded either way.
    n_galaxies, n_place : int
        Injected galaxies per population and placements of each (placements of one galaxy land
        on independent positions and held-out exposures; they give the co-adds).
    populations : tuple of str
        Injection populations (``sersic``, ``knots``, ``blended``) of the report (and so of the
        registry's gates).
    shared_error_populations : tuple of str
        Populations the candidate's shared-error term is measured on
        (:mod:`lumos_ops.lumos.shared_error`); those not in ``populations`` are injected for the
        candidate alone (with the optimal fit, whose ``model_residual`` splits the term) and stay
        out of the report. The default measures it on Sérsic galaxies alone
        (:data:`~lumos_ops.lumos.shared_error.SHARED_ERROR_POPULATIONS`): pooled with bulge + disk +
        knots galaxies it over-widened the Sérsic co-adds (``reports/lumos/shared-error/significance``).
    classical_methods : tuple of str
        Classical methods measured on the injected frames.
    snr_range : (float, float)
        Log-uniform true-SNR range of the injected galaxies.
    spacing : int
        Least distance (pixels) between injected targets; the default
        (:data:`lumos_ops.constants.INJECTION_SEPARATION_PX`) keeps every injected galaxy's light out
        of the other targets' annuli and 60-px LUMOS stamps.
    min_clearance : float
        Smallest distance (pixels) of an injected target from the frame's own detected sources
        (:func:`lumos_ops.noise_calibration.source_clearance`: PSF-matched 4-sigma detections and
        the measurement's own).
    psf_profile : {"kolmogorov", "moffat", "stars"}
        PSF of the galaxies both injections draw (``InjectionConfig.psf_profile``): ``stars``
        (default), each exposure's effective PSF built from its own stars
        (:mod:`lumos_ops.evaluation.star_psf`), the PSF its galaxies have, so that the floors carry
        the PSF model's real error on the survey (an exposure with too few stars gets the
        Kolmogorov); ``kolmogorov`` at the exposure's FWHM, not the measurement's model and not
        necessarily the survey's PSF either (on the SDSS frames it made a +5.6 % bias the stars'
        PSF does not have, ``reports/adapt/stars-psf``); or the measurement's ``moffat`` (the
        exposure's FWHM and β, measured on its stars where the survey says so), which leaves the
        PSF model's error out of the test.
    stamp_background : str or None
        The candidate's stamp background (``Normalization.stamp_background``); None keeps the base
        model's. Another one is fine-tuned in, its input statistics measured on the training stamps.
        The default ``"masked_annulus"`` estimates the sky whatever the frame's crowding
        (docs/likelihood.md §6; on the real SDSS frames it met the coverage target and halved the
        bias at true SNR >= 10 against the median, at 0.1 more sigma68 / optimal's).
    clear_training_positions : bool
        Cut the TEAHUPOO backgrounds only around positions ``min_clearance`` px from the training
        exposures' own sources (``TeahupooConfig.target_clearance``), as the injection places its
        galaxies; False cuts them anywhere, on real sources too.
    truth_mismatch : dict or None
        ``TeahupooConfig`` fields of a truth-model mismatch (:mod:`lumos_ops.sim.truth_mismatch`,
        e.g. its ``TRUTH_MISMATCH``): the training galaxies differ from their model channel in PSF
        profile, width and size and carry knots, as a survey's real galaxies differ from their
        catalogued Sérsic models; None trains on galaxies that are exactly their model.
    training_psf : {"stars", "model"}
        PSF of the TEAHUPOO galaxies (``TeahupooConfig.truth_psf``): ``stars`` (default), each
        training exposure's effective PSF built from its own stars (:mod:`lumos_ops.sim.star_truth`;
        an exposure with too few stars keeps the model's), so that the candidate learns to read
        galaxies that carry the survey's real PSF through the Moffat model the nightly run gives it
        (on the SDSS frames: held-out bias -1.8 % at true SNR 5-10, against -5.2 % trained on the
        Moffat, ``reports/adapt/stars-training``); ``model``, the measurement's Moffat, so that
        every training galaxy is exactly its model channel. ``truth_mismatch`` needs ``model``.
    balanced_weights : bool
        Weight the fine-tuning loss by ``ReferencePrior.balanced_weights`` (each stamp's
        matched-filter flux in place of its true flux in the denominator of the importance
        weight), which keeps the normalised likelihood as the minimiser but gives the faint stamps
        their share of the loss (docs/likelihood.md §15; on the SDSS sub-frames the candidates'
        low reading of faint galaxies goes, ``reports/adapt/stars-training/faint-offset``);
        False: ``importance_weights`` alone.
    measure_error_floor : bool
        Measure the survey's error floors on an injection into the training exposures and measure
        the held-out exposures with them (stage 5 of the module notes); False keeps the survey's.
    floor_snr_range : (float, float)
        Log-uniform true-SNR range of the floor injection's galaxies. The floor is read from rows
        at measured SNR >= 50; drawn over ``snr_range`` only about a tenth of the galaxies get
        there.
    seed : int
        Seeds the split, the training set (``seed + 1``), the fine-tuning and the injections.
    device : str or None
        ``"cpu"``, ``"cuda"``; None: CUDA when available, else CPU.
    num_threads : int or None
        ``torch.set_num_threads`` (None keeps torch's default).
    progress : bool
        tqdm progress bars.
    """

    holdout: float = 0.25
    n_stamps: int = 60_000
    val_fraction: float = 0.05
    epochs: int = 14
    batch_size: int = 256
    lr: float = 3e-4
    lr_step: int = 10
    lr_gamma: float = 0.1
    train_layers: str = "all"
    pair_weight: float = 1.0
    max_pairs: int = 20_000
    default_zero_point: float | None = None
    neighbour_fraction: float = 0.3
    background_scale_range: tuple[float, float] = (0.5, 2.0)
    rescale: str = "all"
    n_galaxies: int = 300
    n_place: int = 5
    populations: tuple[str, ...] = ("sersic",)
    shared_error_populations: tuple[str, ...] = SHARED_ERROR_POPULATIONS
    classical_methods: tuple[str, ...] = CLASSICAL_METHODS
    snr_range: tuple[float, float] = (1.0, 150.0)
    spacing: int = INJECTION_SEPARATION_PX
    min_clearance: float = 6.0
    psf_profile: str = "stars"
    clear_training_positions: bool = True
    stamp_background: str | None = "masked_annulus"
    truth_mismatch: dict[str, Any] | None = None
    training_psf: str = "stars"
    balanced_weights: bool = True
    measure_error_floor: bool = True
    floor_snr_range: tuple[float, float] = (50.0, 150.0)
    seed: int = 0
    device: str | None = None
    num_threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise LumosValueError(f"holdout must be in (0, 1), got {self.holdout}")
        for name in ("n_stamps", "epochs", "batch_size", "lr_step", "n_galaxies", "n_place", "max_pairs"):
            if int(getattr(self, name)) < 1:
                raise LumosValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise LumosValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LumosValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_gamma <= 1:
            raise LumosValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if self.train_layers not in ("all", "last"):
            raise LumosValueError(f"train_layers must be 'all' or 'last', got {self.train_layers!r}")
        if self.rescale not in RESCALES:
            raise LumosValueError(f"rescale must be one of {RESCALES}, got {self.rescale!r}")
        if self.pair_weight < 0:
            raise LumosValueError(f"pair_weight must be >= 0, got {self.pair_weight}")
        from lumos_ops.evaluation.injection import POPULATIONS, PSF_PROFILES
        from lumos_ops.measure import MEASURE_METHODS

        if self.psf_profile not in PSF_PROFILES:
            raise LumosValueError(f"psf_profile must be one of {PSF_PROFILES}, got {self.psf_profile!r}")

        object.__setattr__(self, "populations", tuple(self.populations))
        object.__setattr__(self, "classical_methods", tuple(self.classical_methods))
        object.__setattr__(self, "shared_error_populations", tuple(self.shared_error_populations))
        for name in ("populations", "shared_error_populations"):
            values = getattr(self, name)
            if not values or any(p not in POPULATIONS for p in values):
                raise LumosValueError(f"{name} must be some of {POPULATIONS}, got {list(values)}")
        bad = [m for m in self.classical_methods if m not in MEASURE_METHODS or m == "lumos"]
        if bad:
            raise LumosValueError(f"classical_methods must be some of {CLASSICAL_METHODS}, got {bad}")
        from lumos_ops.lumos.config import STAMP_BACKGROUNDS

        if self.stamp_background is not None and self.stamp_background not in STAMP_BACKGROUNDS:
            raise LumosValueError(f"stamp_background must be one of {STAMP_BACKGROUNDS}, got {self.stamp_background!r}")
        object.__setattr__(self, "background_scale_range", tuple(float(v) for v in self.background_scale_range))
        object.__setattr__(self, "snr_range", tuple(float(v) for v in self.snr_range))
        object.__setattr__(self, "floor_snr_range", tuple(float(v) for v in self.floor_snr_range))
        low, high = self.floor_snr_range if len(self.floor_snr_range) == 2 else (0.0, 0.0)
        if not 0.0 < low < high:
            raise LumosValueError(f"floor_snr_range must be two true SNRs 0 < low < high, got {list(self.floor_snr_range)}")
        if self.truth_mismatch is not None:
            from lumos_ops.sim.teahupoo_config import MISMATCH_FIELDS, TeahupooConfig

            unknown = sorted(set(self.truth_mismatch) - set(MISMATCH_FIELDS))
            if unknown:
                raise LumosValueError(f"truth_mismatch: unknown fields {unknown}; choose from {list(MISMATCH_FIELDS)}")
            TeahupooConfig(n_stamps=1, **self.truth_mismatch)
        from lumos_ops.sim.star_truth import TRUTH_PSFS

        if self.training_psf not in TRUTH_PSFS:
            raise LumosValueError(f"training_psf must be one of {TRUTH_PSFS}, got {self.training_psf!r}")
        if self.training_psf != "model" and self.truth_mismatch:
            raise LumosValueError("training_psf 'stars' draws the training galaxies with the exposures' own PSF; "
                                  "truth_mismatch perturbs the model's: set training_psf='model' with it")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    """What :func:`adapt` wrote.

    Attributes
    ----------
    model_path, report_path, plot_path : Path
        ``OUT/model.pt``, ``OUT/injection_report.json``, ``OUT/injection_report.png``.
    model_sha256 : str
    train_exposures, heldout_exposures : list of str
    report : dict
        The injection report.
    """

    model_path: Path
    report_path: Path
    plot_path: Path
    model_sha256: str
    train_exposures: list[str]
    heldout_exposures: list[str]
    report: dict[str, Any]


def find_exposures(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """FITS exposures named by a directory (searched recursively), a glob pattern, a file, or a list of these.

    Returns
    -------
    list of str
        Sorted, without repeats.

    Raises
    ------
    InputFileError
        Nothing matches.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    found: set[str] = set()
    for item in specs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found.update(str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_FITS_SUFFIXES))
        elif path.is_file():
            found.add(text)
        else:
            found.update(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
    if not found:
        raise InputFileError(f"{', '.join(os.fspath(s) for s in specs)}: no FITS exposure found; give a directory, "
                             "a glob such as 'night/*.fits' or files")
    return sorted(found)


def _header_keys(path: str) -> tuple[str, int | None]:
    """(band, exposure number or None) of an exposure file, read through the current survey's header mapping."""
    from lumos_ops.io.exposure import read_exposure

    exposure = read_exposure(path)
    return exposure.band, exposure.expnum


def split_exposures(paths: Sequence[str], *, holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of exposures into training and held-out sets, by exposure and per band.

    Files sharing an ``EXPNUM`` (the CCDs of one exposure, whatever their bands: a PAUS exposure
    puts a different narrow band on each CCD) form one group, held out or kept whole; a file
    without one is its own group. Band by band (sorted), ``round(holdout x groups)`` of the groups
    holding the band (at least 1 when it has two or more, never all) are held out: the groups an
    earlier band already held out count, and the rest are drawn from the band's other groups with a
    generator seeded by ``seed`` and the band name.

    Returns
    -------
    (list of str, list of str)
        Training and held-out files, sorted; disjoint, together ``paths``.

    Raises
    ------
    LumosValueError
        Nothing can be held out (every band has a single exposure), or the exposures shared across
        bands leave a band with none to train on.
    """
    groups: dict[Any, list[str]] = {}
    bands: dict[str, list[Any]] = {}
    for path in sorted(paths):
        band, expnum = _header_keys(path)
        key = ("expnum", expnum) if expnum is not None else ("file", path)
        groups.setdefault(key, []).append(path)
        if key not in bands.setdefault(band, []):
            bands[band].append(key)
    held_keys: set[Any] = set()
    for band in sorted(bands):
        keys = sorted(bands[band], key=str)
        if len(keys) < 2:
            continue
        target = min(max(1, round(holdout * len(keys))), len(keys) - 1)
        free = [k for k in keys if k not in held_keys]
        need = min(max(0, target - (len(keys) - len(free))), len(free) - 1)
        if need > 0:
            rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(band.encode())]))
            held_keys.update(free[i] for i in rng.choice(len(free), size=need, replace=False).tolist())
    if not held_keys:
        raise LumosValueError("no exposure can be held out: every band has a single exposure; give at least two "
                              "exposures of one band (or cut frames into sub-frames, reports/adapt/README.md)")
    for band, keys in sorted(bands.items()):
        if len(keys) >= 2 and all(k in held_keys for k in keys):
            raise LumosValueError(f"band {band}: every exposure holding it is held out with another band's; give it "
                                  "more exposures or a smaller --holdout")
    train = [p for k, files in groups.items() if k not in held_keys for p in files]
    held = [p for k, files in groups.items() if k in held_keys for p in files]
    return sorted(train), sorted(held)


@dataclasses.dataclass(frozen=True)
class NoiseScale:
    """Pixel noise of a survey's training exposures against a base model's, and the factor between them.

    Attributes
    ----------
    base_noise : float
        The base model's training pixel noise, ``Normalization.pixel_scale`` (e-/s per pixel).
    survey_noise : float
        Median blank-sky pixel noise of the training exposures (e-/s per pixel).
    factor : float
        ``s``: ``survey_noise / base_noise`` when rescaling, else 1.
    by_band : dict of str to float
        Median pixel noise of each band's training exposures (e-/s per pixel).
    exposures : dict of str to float
        Pixel noise of every training exposure (e-/s per pixel).
    """

    base_noise: float
    survey_noise: float
    factor: float
    by_band: dict[str, float]
    exposures: dict[str, float]

    def normalization(self, norm):
        """``norm`` with ``pixel_scale``, ``background_mean``, ``background_std`` and ``flux_scale``
        times ``factor``: a stamp whose noise and fluxes are ``factor`` times the base model's
        training ones gives the network the same inputs, and its outputs come back in e-/s.
        ``pixel_soft``, ``model_scale`` (unit-flux model images), the ``i_auto`` (AB mag) terms and
        ``ccd_shape`` are unchanged."""
        s = self.factor
        return dataclasses.replace(norm, pixel_scale=norm.pixel_scale * s, background_mean=norm.background_mean * s,
                                   background_std=norm.background_std * s, flux_scale=norm.flux_scale * s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (checkpoint metadata, ``noise.json``, the report)."""
        return {"unit": "e-/s per pixel", **dataclasses.asdict(self)}


def exposure_pixel_noise(exposure) -> float:
    """Blank-sky pixel noise (e-/s per pixel) of an exposure, or of the exposure file at that path.

    The standard deviation of the pixels left after masking the frame's sources (above 3 robust
    sigmas, grown by 4 px), NaNs and pixels below -5 sigmas, and after removing the sky's
    large-scale structure: the zero-lag value of
    :func:`lumos_ops.evaluation.injection.noise_autocovariance`, the noise the injection scores
    against. Exposures are read through the current survey's header mapping (e-/s).
    """
    from lumos_ops.evaluation.injection import noise_autocovariance
    from lumos_ops.io.exposure import read_exposure

    if isinstance(exposure, (str, os.PathLike)):
        exposure = read_exposure(exposure)
    data = np.asarray(exposure.data, dtype=np.float64)
    if not np.isfinite(data).any():
        raise InputFileError(f"{exposure.path}: no finite pixel to measure the noise on")
    cov = noise_autocovariance(data)
    noise = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
    if not (np.isfinite(noise) and noise > 0):
        raise InputFileError(f"{exposure.path}: blank-sky pixel noise is {noise} e-/s; the image looks constant or "
                             "masked: check its pixels and header (GAIN, EXPTIME)")
    return noise


def measure_noise_scale(paths: Sequence[str], base_noise: float, *, rescale: bool = True) -> NoiseScale:
    """:class:`NoiseScale` of exposures (read through the current survey) against a base model's
    training pixel noise ``base_noise`` (e-/s per pixel); ``rescale=False`` gives ``factor`` 1."""
    from lumos_ops.io.exposure import read_exposure

    if not paths:
        raise LumosValueError("no exposure to measure the pixel noise on")
    if not (math.isfinite(base_noise) and base_noise > 0):
        raise LumosValueError(f"base model's training pixel noise must be > 0 e-/s, got {base_noise}")
    noise: dict[str, float] = {}
    bands: dict[str, list[float]] = {}
    for path in paths:
        exposure = read_exposure(path)
        noise[os.fspath(path)] = exposure_pixel_noise(exposure)
        bands.setdefault(exposure.band, []).append(noise[os.fspath(path)])
    survey_noise = float(np.median(list(noise.values())))
    return NoiseScale(base_noise=float(base_noise), survey_noise=survey_noise,
                      factor=survey_noise / float(base_noise) if rescale else 1.0,
                      by_band={b: float(np.median(v)) for b, v in sorted(bands.items())}, exposures=noise)


def _write_json(path: Path, value: Any) -> None:
    from lumos_ops.evaluation.injection_report import json_clean
    from lumos_ops.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(json_clean(value), indent=2, allow_nan=False) + "\n")


_RUN_ONLY_SETTINGS = ("device", "num_threads", "progress")
"""Settings that change how a run goes, not what it makes: a resumed run may change them."""


def _stage_settings(out: Path, config: AdaptConfig, base_sha256: str, catalog: pd.DataFrame) -> None:
    """Record what an output directory is made from (``settings.json``: the configuration, the base
    model's checksum, the survey and the catalogue's checksum), or check a resumed run against it:
    every stage keeps what an earlier run of the directory made, so a run with other settings is
    refused rather than handed the old model and injection under its new settings' name."""
    from lumos_ops.survey import current_survey

    settings = {k: v for k, v in config.to_dict().items() if k not in _RUN_ONLY_SETTINGS}
    settings["base_sha256"] = base_sha256
    settings["survey"] = current_survey().to_dict()
    settings["catalog_sha256"] = hashlib.sha256(
        pd.util.hash_pandas_object(catalog, index=False).to_numpy().tobytes()).hexdigest()
    path = out / "settings.json"
    if not path.is_file():
        _write_json(path, settings)
        return
    saved = json.loads(path.read_text())
    changed = [k for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
    if changed:
        shown = ", ".join(f"{k} {saved.get(k)!r} -> {settings.get(k)!r}" for k in changed[:4])
        raise LumosValueError(f"{path}: this output directory was made with other settings ({shown}"
                              f"{', ...' if len(changed) > 4 else ''}); use a new --out, or the same settings "
                              "to resume it")


def _stage_split(out: Path, paths: list[str], config: AdaptConfig) -> tuple[list[str], list[str]]:
    path = out / "split.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if sorted(saved["exposures"]) != paths or saved["seed"] != config.seed or saved["holdout"] != config.holdout:
            raise LumosValueError(f"{path}: this output directory was started with other exposures, seed or holdout; "
                                  "use a new --out or the same inputs")
        return saved["train"], saved["heldout"]
    train, held = split_exposures(paths, holdout=config.holdout, seed=config.seed)
    _write_json(path, {"exposures": paths, "seed": config.seed, "holdout": config.holdout, "train": train,
                       "heldout": held})
    log.info("adapt: %d training and %d held-out exposures", len(train), len(held))
    return train, held


def _stage_noise(out: Path, train: list[str], base, config: AdaptConfig) -> NoiseScale:
    """The training exposures' :class:`NoiseScale` against the base model (``noise.json``, kept on a rerun)."""
    path = out / "noise.json"
    base_noise = float(base.normalization.pixel_scale)
    if path.is_file():
        saved = json.loads(path.read_text())
        if sorted(saved["exposures"]) == sorted(train) and saved["base_noise"] == base_noise:
            survey_noise = float(saved["survey_noise"])
            return NoiseScale(base_noise=base_noise, survey_noise=survey_noise,
                              factor=survey_noise / base_noise if config.rescale != "none" else 1.0,
                              by_band=saved["by_band"], exposures=saved["exposures"])
    noise = measure_noise_scale(train, base_noise, rescale=config.rescale != "none")
    _write_json(path, noise.to_dict())
    scaled = {"all": "normalisation and flux prior", "prior": "flux prior", "none": "nothing"}[config.rescale]
    log.info("adapt: pixel noise of the training exposures %.4g e-/s (median; by band %s), base model's %.4g e-/s: "
             "%s x %.4g", noise.survey_noise, ", ".join(f"{b} {v:.4g}" for b, v in noise.by_band.items()), base_noise,
             scaled, noise.factor)
    return noise


def _candidate_prior(base, noise: NoiseScale):
    """The candidate's reference prior: the base model's (or the shipped one) times the noise factor."""
    from lumos_ops.flux_prior import REFERENCE_PRIOR

    prior = base.flux_prior or REFERENCE_PRIOR
    return prior if noise.factor == 1.0 else prior.scaled(noise.factor)


def _stage_training_set(out: Path, train: list[str], catalog: pd.DataFrame, base, config: AdaptConfig,
                        noise: NoiseScale) -> Path:
    from lumos_ops.sim import TeahupooConfig, generate_training_set
    from lumos_ops.survey import current_survey

    prior = _candidate_prior(base, noise)
    ts_config = TeahupooConfig(
        n_stamps=config.n_stamps, stamp_size=base.net.config.stamp_size, seed=config.seed + 1,
        split_fractions=(1.0 - config.val_fraction, config.val_fraction, 0.0), flux_source="reference_prior",
        flux_prior={k: v for k, v in prior.to_dict().items() if k != "kind"},
        neighbour_fraction=config.neighbour_fraction, background_scale_range=config.background_scale_range,
        pixel_scale=current_survey().pixel_scale,
        target_clearance=config.min_clearance if config.clear_training_positions else None,
        truth_psf=config.training_psf, **(config.truth_mismatch or {}),
    )
    set_dir = out / "teahupoo"
    manifest = set_dir / "manifest.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("config") == ts_config.to_dict() and saved.get("exposures") == train:
            log.info("adapt: training set %s already made; kept", set_dir)
            return set_dir
    log.info("adapt: %d TEAHUPOO stamps on %d training exposures", config.n_stamps, len(train))
    generate_training_set(ts_config, train, catalog, set_dir, progress=config.progress)
    return set_dir


def _pairs(train: list[str], catalog: pd.DataFrame, base, norm, config: AdaptConfig) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """Observations, pair indices, calibration factors and a note on the eq. (11) pairs of the training exposures."""
    from lumos_ops.lumos.coadd import njy_factor
    from lumos_ops.lumos.pairs import collect_observations, make_pairs

    empty = np.zeros((0, 2), dtype=np.int64)
    if config.pair_weight == 0:
        return None, empty, np.zeros(0), "pair term disabled (pair_weight 0)"
    try:
        obs = collect_observations(train, catalog, norm, stamp_size=base.net.config.stamp_size,
                                   default_zero_point=config.default_zero_point)
    except LumosValueError as exc:
        return None, empty, np.zeros(0), f"no pairs: {exc}"
    pairs = make_pairs(obs.table, max_pairs=config.max_pairs, seed=config.seed)
    if pairs.shape[0] == 0:
        return None, empty, np.zeros(0), "no pairs: no catalogue galaxy is observed on two training exposures in one band"
    c = njy_factor(obs.table["zero_point"].to_numpy())
    return obs, pairs, c / float(np.median(c)), f"{pairs.shape[0]} pairs of {len(obs.table)} observations"


def _pair_loss(net, obs, pairs: np.ndarray, factor: np.ndarray, device, likelihood: bool):
    import torch

    from lumos_ops.lumos.losses import pair_overlap_nll

    def forward(idx: np.ndarray):
        out = net(torch.from_numpy(obs.inputs.images[idx]).to(device), torch.from_numpy(obs.inputs.scalars[idx]).to(device),
                  torch.from_numpy(obs.inputs.band_epoch[idx]).to(device))
        return out.scaled(torch.from_numpy(factor[idx, None].astype(np.float32)).to(device))

    return pair_overlap_nll(forward(pairs[:, 0]), forward(pairs[:, 1]), truncated=not likelihood).mean()


def _stage_finetune(out: Path, set_dir: Path, train: list[str], catalog: pd.DataFrame, base,
                    config: AdaptConfig, noise: NoiseScale, survey=None) -> tuple[Path, str, dict[str, Any]]:
    """Fine-tune ``base`` on the training set (resumable); returns the checkpoint path, its SHA-256 and the history.

    The network starts from the base model's weights with the normalisation rescaled by ``noise``
    (:meth:`NoiseScale.normalization`); the training set's prior is the candidate's.

    With a ``survey`` whose bands or epochs differ from the base model's, the network first gets
    that survey's band x epoch embedding (:func:`lumos_ops.lumos.band_embedding.survey_embedding`)
    and the training set's stamps are indexed by the survey's rows.
    """
    import torch

    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
    from lumos_ops.lumos.data import StampBatches
    from lumos_ops.lumos.losses import supervised_loss
    from lumos_ops.lumos.preprocess import with_imag_range
    from lumos_ops.lumos.train import evaluate_split, freeze_batchnorm, psf_range_metadata, select_device

    model_path = out / "model.pt"
    done = out / "train" / "done.json"
    if model_path.is_file() and done.is_file():
        info = json.loads(done.read_text())
        log.info("adapt: fine-tuning already finished (%s); kept", model_path)
        return model_path, info["sha256"], info
    work = out / "train"
    work.mkdir(parents=True, exist_ok=True)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    loaded = load_checkpoint(base.path, device=device)
    net = loaded.net
    norm = noise.normalization(loaded.normalization) if config.rescale == "all" else loaded.normalization
    ts = TrainingSet(set_dir)
    survey_meta: dict[str, Any] = {}
    if survey is not None:
        from lumos_ops.lumos.band_embedding import model_bands, survey_embedding

        bands, n_epochs, _ = model_bands(loaded.metadata)
        if (tuple(survey.embedding_bands), survey.n_epochs) != (bands, n_epochs):
            net, survey_meta = survey_embedding(net, loaded.metadata, survey, trained_rows=loaded.trained_band_epochs)
        rows = [survey.embedding_row(b, int(e)) for b, e in zip(ts.meta["band"], ts.meta["epoch"])]
        ts.meta["band_epoch"] = np.asarray(rows, dtype=np.int64)
    prior = ts.flux_prior
    train_ids, val_ids = ts.indices("train"), ts.indices("val")
    if train_ids.size == 0 or val_ids.size == 0:
        raise LumosValueError(f"{set_dir}: need stamps in both the train and val splits; raise n_stamps")
    if config.stamp_background not in (None, norm.stamp_background):
        from lumos_ops.lumos.preprocess import with_stamp_background

        sample = np.sort(np.random.default_rng(config.seed).choice(train_ids, min(4096, train_ids.size), replace=False))
        norm = with_stamp_background(norm, ts.images(sample)[:, 0], config.stamp_background)
    norm = with_imag_range(norm, ts.meta["i_auto"].to_numpy(np.float64)[train_ids])
    net.bind_normalization(norm)
    train_data = StampBatches(ts, train_ids, norm, truncation_imag=math.inf, flux_prior=prior,
                              balanced_weights=config.balanced_weights)
    val_data = StampBatches(ts, val_ids, norm, truncation_imag=math.inf, flux_prior=prior,
                            balanced_weights=config.balanced_weights)
    params = list(net.parameters()) if config.train_layers == "all" else list(net.head.parameters())
    for p in net.parameters():
        p.requires_grad_(config.train_layers == "all")
    for p in net.head.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    obs, pairs, factor, pair_note = _pairs(train, catalog, loaded, norm, config)
    if obs is None and config.pair_weight != 0:  # e.g. a catalogue of another field: said, not buried in the report
        log.warning("adapt: fine-tuning without the eq. (11) pair term: %s", pair_note)
    if survey_meta and obs is not None:
        obs, pair_note = None, f"{pair_note}; not used: the observations' rows are not remapped to a new embedding"
    state_path = work / "train_state.pt"
    history: list[dict[str, Any]] = []
    start, best = 0, math.inf
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history, best = int(state["epoch"]), list(state["history"]), float(state["best_val_loss"])
        log.info("adapt: resuming the fine-tuning after epoch %d", start)
    val_loader = _batches(val_data, config.batch_size, None)
    if not history:
        before = evaluate_split(net, val_loader, device)["loss"]
        history.append({"epoch": 0, "val_loss": before})
    trained_rows = sorted(set(int(v) for v in np.unique(ts.meta["band_epoch"].to_numpy(np.int64)[train_ids]))
                          | (set() if survey_meta else set(loaded.trained_band_epochs or ())))
    metadata = {
        **loaded.metadata,
        **survey_meta,
        "trained_band_epochs": trained_rows,
        **psf_range_metadata(ts, train_ids),
        "flux_prior": prior.to_dict() if prior is not None else loaded.metadata.get("flux_prior"),
        "truncation_imag": None,
        "pixel_noise": noise.to_dict(),
        "adapt": {"base_model": loaded.path, "base_sha256": loaded.sha256, "training_set": str(set_dir.resolve()),
                  "train_exposures": train, "n_train": int(train_ids.size), "n_val": int(val_ids.size),
                  "pairs": pair_note, "config": config.to_dict()},
    }
    metadata.pop("history", None)
    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        net.train()
        freeze_batchnorm(net)
        loader = _batches(train_data, config.batch_size, config.seed * 100_003 + epoch)
        bar = None
        iterator = loader
        if config.progress:
            from tqdm.auto import tqdm

            bar = iterator = tqdm(loader, desc=f"adapt epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        rng = np.random.default_rng(config.seed * 100_003 + epoch)
        total, count, pair_total, steps = 0.0, 0, 0.0, 0
        for batch in iterator:
            batch = {k: v.to(device) for k, v in batch.items()}
            optimizer.zero_grad(set_to_none=True)
            outp = net(batch["images"], batch["scalars"], batch["band_epoch"])
            loss = supervised_loss(outp, batch["flux"], batch["truncated"], batch["weight"])
            if obs is not None:
                pick = pairs[rng.choice(pairs.shape[0], size=min(config.batch_size, pairs.shape[0]), replace=False)]
                pair = _pair_loss(net, obs, pick, factor, device, loaded.is_likelihood)
                pair_total += float(pair.detach())
                loss = loss + config.pair_weight * pair
            if not torch.isfinite(loss.detach()):
                raise LumosValueError(f"adapt epoch {epoch + 1}: the loss is not finite; lower --lr")
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch["flux"].shape[0]
            count += batch["flux"].shape[0]
            steps += 1
            if bar is not None:
                bar.set_postfix(loss=f"{total / count:.4f}")
        if bar is not None:
            bar.close()
        scheduler.step()
        val = evaluate_split(net, val_loader, device)["loss"]
        record = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_loss": val,
                  "pair_loss": pair_total / steps if obs is not None and steps else None,
                  "lr": lr, "seconds": time.perf_counter() - t0}
        history.append(record)
        log.info("adapt epoch %d/%d train %.4f val %.4f (%.0f s)", epoch + 1, config.epochs, record["train_loss"], val,
                 record["seconds"])
        if val < best:
            best = val
            save_checkpoint(work / "best.pt", net, arch=loaded.arch, normalization=norm,
                            metadata={**metadata, "epoch": epoch + 1, "val_loss": val})
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "epoch": epoch + 1, "history": history, "best_val_loss": best}
        replace_atomically(state_path, lambda tmp, state=state: torch.save(state, tmp))
    best_model = load_checkpoint(work / "best.pt", device="cpu")
    sha = save_checkpoint(model_path, best_model.net, arch=best_model.arch, normalization=best_model.normalization,
                          metadata={**best_model.metadata, "history": history})
    info = {"sha256": sha, "history": history, "best_epoch": best_model.metadata.get("epoch"), "pairs": pair_note,
            "device": str(device), "n_train": int(train_ids.size), "n_val": int(val_ids.size),
            "band_epochs": {str(k): int(v) for k, v in ts.meta.loc[train_ids, "band_epoch"].value_counts().sort_index().items()}}
    _write_json(done, info)
    return model_path, sha, info


def _batches(dataset, batch_size: int, seed: int | None):
    from torch.utils.data import BatchSampler, DataLoader

    order = list(range(len(dataset))) if seed is None else np.random.default_rng(seed).permutation(len(dataset)).tolist()
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(order, batch_size=batch_size, drop_last=False),
                      num_workers=0)


def _floor_populations(config: AdaptConfig) -> list[str]:
    """Populations of the floor injection: Sérsic galaxies, and blended pairs when the report holds them."""
    return ["sersic", *(["blended"] if "blended" in config.populations else [])]


def _stage_error_floor(out: Path, train: list[str], catalog: pd.DataFrame, model_path: Path, sha: str,
                       config: AdaptConfig, survey) -> dict[str, Any]:
    """The survey's error floors measured by the candidate on new galaxies injected into the training
    exposures (module notes, stage 5): ``error_floor.json`` (kept on a rerun with the same candidate
    and exposures) and ``survey.json`` (the survey with those floors).

    The candidate's floor becomes the survey's ``flux_error_floor``; each classical method of
    ``config.classical_methods``, measured on the same galaxies, gets its own where it can be
    measured (``method_error_floors``): a candidate trained on galaxies with the exposures' own PSF
    needs less than methods that read them through the Moffat model. With blended pairs, the
    candidate's neighbour floor becomes the survey's ``neighbour_error_floor`` and each classical
    method gets its own (``method_neighbour_error_floors``): the joint fit leaves the same residual
    of a neighbour's model in every method's stamps, and each method reads it through its own weights.

    Returns the record: ``flux`` and ``neighbour`` (:class:`~lumos_ops.photometry.error_floor.FloorEstimate`
    as dicts, ``neighbour`` None without blended pairs), ``methods`` and ``neighbour_methods`` (each
    classical method's estimates), ``survey_floors`` (before) and ``flux_error_floor`` /
    ``neighbour_error_floor`` / ``method_error_floors`` / ``method_neighbour_error_floors`` (what the
    held-out exposures are measured with).
    """
    from lumos_ops.evaluation.injection import MEASUREMENT_REVISION, InjectionConfig, aperture_factors, run_injection
    from lumos_ops.photometry.error_floor import estimate_error_floor, estimate_neighbour_floor, statistical_error

    before = {"flux_error_floor": survey.flux_error_floor, "neighbour_error_floor": survey.neighbour_error_floor,
              "method_error_floors": dict(survey.method_error_floors),
              **({"method_neighbour_error_floors": dict(survey.method_neighbour_error_floors)}
                 if survey.method_neighbour_error_floors else {})}
    correction = bool(survey.psf_flux_correction)
    if not config.measure_error_floor:
        return {"measured": False, "survey_floors": before, **before, "psf_flux_correction": correction}
    path = out / "error_floor.json"
    populations = _floor_populations(config)
    methods = ["lumos", *config.classical_methods]
    if path.is_file():
        saved = json.loads(path.read_text())
        if (saved.get("model_sha256") == sha and saved.get("train_exposures") == train
                and saved.get("populations") == populations and saved.get("survey_floors") == before
                and saved.get("psf_profile", "kolmogorov") == config.psf_profile
                and saved.get("measured_methods") == methods
                and saved.get("floor_snr_range") == list(config.floor_snr_range)
                and saved.get("psf_flux_correction", False) == correction
                and saved.get("measurement_revision", 0) == MEASUREMENT_REVISION):
            return saved
    work = out / "floor"
    work.mkdir(parents=True, exist_ok=True)
    tables = {}
    for k, population in enumerate(populations):
        low, high = config.floor_snr_range
        cached = work / f"{population}-{sha[:16]}-snr{low:g}-{high:g}.parquet"
        fallback = aperture_factors(tables["sersic"]) if "sersic" in tables else None
        if cached.is_file():
            table = pd.read_parquet(cached)
            if (injected_with(table) == config.psf_profile and set(methods) <= set(table["method"])
                    and _corrected_as(table, correction) and _borrowed_as(table, fallback) and _current(table)):
                tables[population] = table
                continue
        inj = InjectionConfig(population=population, n_galaxies=config.n_galaxies, n_place=config.n_place,
                              snr_range=config.floor_snr_range, spacing=config.spacing,
                              min_clearance=config.min_clearance, psf_profile=config.psf_profile,
                              seed=config.seed * 1000 + 500 + k)
        log.info("adapt: error floor, %s: %d galaxies x %d placements on %d training exposures", population,
                 config.n_galaxies, config.n_place, len(train))
        table = run_injection(train, inj, methods=methods, model=os.fspath(model_path), keep_headers=True,
                              shapes=catalog, work_dir=work, aperture_fallback=fallback)
        table = table.assign(measurement_revision=MEASUREMENT_REVISION)
        replace_atomically(cached, lambda tmp, table=table: table.to_parquet(tmp, index=False))
        tables[population] = table
    sersic = tables["sersic"]

    def estimate(method: str):
        rows = sersic[sersic["method"] == method]
        groups = rows["galaxy"] if "galaxy" in rows else None
        return estimate_error_floor(rows["flux"], statistical_error(rows), rows["true_flux"], groups=groups)

    flux = estimate("lumos")
    floor = flux.floor if math.isfinite(flux.floor) else survey.flux_error_floor
    by_method = {m: estimate(m) for m in config.classical_methods}
    method_floors = {**survey.method_error_floors,
                     **{m: float(e.floor) for m, e in by_method.items() if math.isfinite(e.floor)}}
    neighbour = None
    neighbour_floor = survey.neighbour_error_floor
    by_method_neighbour: dict[str, Any] = {}
    method_neighbour_floors = dict(survey.method_neighbour_error_floors)

    def estimate_neighbour(method: str, flux_floor: float):
        pairs = tables["blended"][tables["blended"]["method"] == method]
        light = pairs["neighbour_light"] if "neighbour_light" in pairs else np.zeros(len(pairs))
        return estimate_neighbour_floor(pairs["flux"], statistical_error(pairs), pairs["true_flux"], light,
                                        floor=flux_floor)

    if "blended" in tables:
        neighbour = estimate_neighbour("lumos", floor)
        if math.isfinite(neighbour.floor):
            neighbour_floor = neighbour.floor
        by_method_neighbour = {m: estimate_neighbour(m, method_floors.get(m, floor)) for m in config.classical_methods}
        method_neighbour_floors.update({m: float(e.floor) for m, e in by_method_neighbour.items()
                                        if math.isfinite(e.floor)})
    record = {"measured": True, "model_sha256": sha, "train_exposures": train, "populations": populations,
              "psf_profile": config.psf_profile, "measured_methods": methods,
              "floor_snr_range": list(config.floor_snr_range), "psf_flux_correction": correction,
              "measurement_revision": MEASUREMENT_REVISION, "flux": flux.to_dict(), "neighbour": None if neighbour is None else neighbour.to_dict(),
              "methods": {m: e.to_dict() for m, e in by_method.items()},
              "neighbour_methods": {m: e.to_dict() for m, e in by_method_neighbour.items()},
              "survey_floors": before, "flux_error_floor": float(floor), "neighbour_error_floor": float(neighbour_floor),
              "method_error_floors": method_floors, "method_neighbour_error_floors": method_neighbour_floors}
    dataclasses.replace(survey, flux_error_floor=float(floor), neighbour_error_floor=float(neighbour_floor),
                        method_error_floors=method_floors,
                        method_neighbour_error_floors=method_neighbour_floors).write(out / "survey.json")
    _write_json(path, record)
    log.info("adapt: error floors measured on the training exposures: flux %.4f (survey's %.4f; %d rows at SNR >= %g), "
             "neighbour %.4f (survey's %.4f), classical methods %s, their neighbour floors %s; written to %s", floor,
             survey.flux_error_floor, flux.n, flux.min_snr, neighbour_floor, survey.neighbour_error_floor,
             {m: round(v, 4) for m, v in method_floors.items()},
             {m: round(v, 4) for m, v in method_neighbour_floors.items()}, out / "survey.json")
    return record


def floor_transfer(floors: dict[str, Any], report: dict[str, Any], *, population: str = "sersic") -> dict[str, Any] | None:
    """Whether the LUMOS floor measured on the training exposures is the one the held-out rows ask
    for: ``applied`` and ``asked`` with their bootstrap errors, ``z`` their difference in units of
    the combined error, and ``carries_over`` (``|z| <= 2``); None when either was not measured.

    The floor belongs to each exposure's PSF against the model; a floor from a few training
    exposures can miss others' (``reports/adapt/stars-training/floor-range``)."""
    if not floors.get("measured"):
        return None
    trained = floors.get("flux") or {}
    entry = report.get("populations", {}).get(population, {}).get("methods", {}).get("lumos", {})
    asked = (entry.get("error_floor") or {}).get("asked") or {}
    values = [trained.get("floor"), trained.get("floor_err"), asked.get("floor"), asked.get("floor_err")]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    applied, applied_err, held, held_err = (float(v) for v in values)
    scale = math.hypot(applied_err, held_err)
    z = (held - applied) / scale if scale > 0 else 0.0
    return {"population": population, "applied": applied, "applied_err": applied_err, "asked": held,
            "asked_err": held_err, "z": z, "carries_over": abs(z) <= 2.0}


def _stage_injection(out: Path, held: list[str], catalog: pd.DataFrame, base_path: str, model_path: Path,
                     config: AdaptConfig, floors: dict[str, Any]) -> pd.DataFrame:
    """Injection tables of the base model (with the classical methods) and the candidate, cached per
    population; the shared-error populations outside ``config.populations`` for the candidate alone.
    ``floors`` (stage 5's record) names the error floors they are measured with: a cached table whose
    rows carry other floors (its ``error_floor`` / ``neighbour_error_floor`` columns) is measured
    again and replaced once the new one is written."""
    from lumos_ops.evaluation.injection import MEASUREMENT_REVISION, InjectionConfig, aperture_factors, run_injection

    work = out / "injection"
    work.mkdir(parents=True, exist_ok=True)
    tables = []
    both = [("base", base_path, [*config.classical_methods, "lumos"]), ("candidate", os.fspath(model_path), ["lumos"])]
    # the optimal fit's model_residual gives the shared-error term its residual axis
    alone = [("candidate", os.fspath(model_path), ["optimal", "lumos"])]
    extra = [p for p in config.shared_error_populations if p not in config.populations]
    ordered = sorted([*config.populations, *extra], key=lambda p: p != "sersic")  # the blends borrow its factors
    sersic: dict[str, pd.DataFrame] = {}
    for population in ordered:
        k = [*config.populations, *extra].index(population)
        runs = both if population in config.populations else alone
        inj = InjectionConfig(population=population, n_galaxies=config.n_galaxies, n_place=config.n_place,
                              snr_range=config.snr_range, spacing=config.spacing, min_clearance=config.min_clearance,
                              psf_profile=config.psf_profile, seed=config.seed * 1000 + 7 + k)
        for label, model, methods in runs:
            path = work / f"{population}-{label}.parquet"
            table = pd.read_parquet(path) if path.is_file() else None
            fallback = aperture_factors(sersic[label]) if label in sersic else None
            if (table is None or not _measured_with(table, floors) or injected_with(table) != config.psf_profile
                    or not _corrected_as(table, bool(floors.get("psf_flux_correction", False)))
                    or not _borrowed_as(table, fallback) or not _current(table)):
                log.info("adapt: injection %s, %s model: %d galaxies x %d placements on %d held-out exposures",
                         population, label, config.n_galaxies, config.n_place, len(held))
                table = run_injection(held, inj, methods=methods, model=model, keep_headers=True, shapes=catalog,
                                      work_dir=work, aperture_fallback=fallback)
                table = table.assign(measurement_revision=MEASUREMENT_REVISION)
                replace_atomically(path, lambda tmp, table=table: table.to_parquet(tmp, index=False))
            if population == "sersic":
                sersic[label] = table
            table = table.copy()
            table["model"] = label
            tables.append(table)
    return pd.concat(tables, ignore_index=True)


def injected_with(table: pd.DataFrame) -> str:
    """The PSF profile an injection table's galaxies were drawn with (its ``psf_profile`` column;
    Kolmogorov for tables written before the column)."""
    if "psf_profile" not in table or len(table) == 0:
        return "kolmogorov"
    return str(table["psf_profile"].iloc[0])


def _borrowed_as(table: pd.DataFrame, fallback: dict[tuple[str, str], float] | None) -> bool:
    """Whether a cached injection table was corrected as ``fallback`` would correct it now: a table
    measured before the blends borrowed the Sérsic galaxies' aperture correction has no
    ``aperture_correction_borrowed`` column, and is measured again when there is a factor to borrow."""
    return not fallback or "aperture_correction" not in table or "aperture_correction_borrowed" in table


def _current(table: pd.DataFrame) -> bool:
    """Whether a cached injection table was measured at the current
    :data:`~lumos_ops.evaluation.injection.MEASUREMENT_REVISION` (its ``measurement_revision`` column;
    tables without it predate revision 1)."""
    from lumos_ops.evaluation.injection import MEASUREMENT_REVISION

    if "measurement_revision" not in table or len(table) == 0:
        return False
    return int(table["measurement_revision"].iloc[0]) == MEASUREMENT_REVISION


def _corrected_as(table: pd.DataFrame, correction: bool) -> bool:
    """Whether an injection table was measured with the per-exposure flux correction
    (:mod:`lumos_ops.flux_correction`, column ``flux_correction``) exactly when ``correction``."""
    return ("flux_correction" in table.columns) == bool(correction)


def _measured_with(table: pd.DataFrame, floors: dict[str, Any]) -> bool:
    """Whether an injection table's rows were measured with ``floors`` (``flux_error_floor``,
    ``neighbour_error_floor``, ``method_error_floors``, ``method_neighbour_error_floors``): per method,
    the largest value of its
    rows' ``error_floor`` / ``neighbour_error_floor`` columns, as the injection report reads them."""
    own = floors.get("method_error_floors") or {}
    own_neighbour = floors.get("method_neighbour_error_floors") or {}
    for method, rows in table.groupby(table["method"] if "method" in table else np.zeros(len(table))):
        expected = {"error_floor": own.get(method, floors["flux_error_floor"]),
                    "neighbour_error_floor": own_neighbour.get(method, floors["neighbour_error_floor"])}
        for column, value in expected.items():
            values = rows[column].to_numpy(np.float64) if column in rows else np.zeros(0)
            used = float(np.nanmax(values)) if np.isfinite(values).any() else None
            if used is None or not math.isclose(used, float(value), rel_tol=1e-9, abs_tol=1e-12):
                return False
    return len(table) > 0


def _stage_shared_error(model_path: Path, table: pd.DataFrame, config: AdaptConfig):
    """Measure the candidate's shared error on its held-out injection (``config.shared_error_populations``) and record it
    in its checkpoint's metadata ``"shared_error"``, which the co-adds read (idempotent on a rerun)."""
    from lumos_ops.lumos.shared_error import record_shared_error

    # the candidate's LUMOS rows, and the optimal rows of the same placements (their model_residual)
    candidate = table[(table["model"] == "candidate") | (table["method"] == "optimal")]
    populations = sorted(config.shared_error_populations)
    shared = record_shared_error(model_path, candidate, model_path, populations=populations,
                                 source=f"lumos adapt held-out injection ({', '.join(populations)})")
    log.info("adapt: shared-error correlation per measured-SNR bin %s: %s", shared.snr_edges, shared.rho)
    return shared


def adapt(
    exposures: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    catalog: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    config: AdaptConfig | None = None,
    *,
    base_model: str | os.PathLike[str] | None = None,
    survey=None,
) -> AdaptResult:
    """Split, build the training set, fine-tune and validate by injection (module notes); resumable.

    Parameters
    ----------
    exposures : path-like, glob or sequence of them
        The survey's FITS exposures (header contract), see :func:`find_exposures`.
    catalog : DataFrame
        External catalogue (shapes for the training set and the injection; targets for pairs).
    out_dir : path-like
        Output directory; rerun with the same one to continue an interrupted run.
    config : AdaptConfig, optional
    base_model : path-like, shipped-model name or None, keyword-only
        Starting checkpoint (None: the shipped default).
    survey : lumos_ops.survey.Survey or None, keyword-only
        The exposures' survey. When its bands or camera epochs differ from the base model's, the
        candidate gets the survey's band x epoch embedding, each row initialised from the base
        model's trained row nearest in wavelength, and records the band list in its metadata.
        Every stage reads the exposures through its header mapping. None: PAUS.

    Returns
    -------
    AdaptResult
    """
    from lumos_ops.survey import use_survey

    config = config or AdaptConfig()
    with use_survey(survey):
        return _adapt(exposures, catalog, out_dir, config, base_model)


def _adapt(exposures, catalog: pd.DataFrame, out_dir, config: AdaptConfig, base_model) -> AdaptResult:
    """:func:`adapt` inside its survey's ``use_survey`` block."""
    import torch

    from lumos_ops.evaluation.adapt_report import adapt_report, plot_view
    from lumos_ops.evaluation.injection_report import plot_injection
    from lumos_ops.io.catalog import validate_catalog
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.shared_error import placement_residual
    from lumos_ops.survey import current_survey, use_survey

    survey = current_survey()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(out_dir)
    catalog = validate_catalog(catalog, source="adapt catalogue")
    paths = find_exposures(exposures)
    base = load_checkpoint(base_model, device="cpu")
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out {out}: is a file; give a directory (new, or an earlier run's to resume it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
    _stage_settings(out, config, base.sha256, catalog)
    started = time.perf_counter()
    train, held = _stage_split(out, paths, config)
    noise = _stage_noise(out, train, base, config)
    set_dir = _stage_training_set(out, train, catalog, base, config, noise)
    model_path, sha, info = _stage_finetune(out, set_dir, train, catalog, base, config, noise, survey)
    floors = _stage_error_floor(out, train, catalog, model_path, sha, config, survey)
    with use_survey(dataclasses.replace(survey, flux_error_floor=floors["flux_error_floor"],
                                        neighbour_error_floor=floors["neighbour_error_floor"],
                                        method_error_floors=floors.get("method_error_floors") or {},
                                        method_neighbour_error_floors=floors.get("method_neighbour_error_floors")
                                        or {})):
        table = _stage_injection(out, held, catalog, base.path, model_path, config, floors)
    shared = _stage_shared_error(model_path, table, config)
    scored = table["population"].isin(config.populations)
    # the candidate's rows of every pooled population (with the optimal fit's residual of the same
    # placements, from the base run for a scored population): the report's co-adds use the recorded term
    of_term = table[table["population"].isin(config.shared_error_populations)
                    & ((table["model"] == "candidate") | (table["method"] == "optimal"))]
    pooled = of_term[(of_term["method"] == "lumos") & (of_term["model"] == "candidate")]
    pooled = pooled.assign(model_residual=placement_residual(of_term, pooled)) if len(pooled) else None
    report = adapt_report(table[scored], shared_error_rows=pooled)
    report["adapt"] = {"base_model": base.path, "base_sha256": base.sha256, "model": str(model_path),
                       "model_sha256": sha, "train_exposures": train, "heldout_exposures": held,
                       "pixel_noise": noise.to_dict(), "shared_error": shared.to_dict(), "training": info,
                       "error_floor": floors, "floor_transfer": floor_transfer(floors, report),
                       "config": config.to_dict(), "seconds_this_run": time.perf_counter() - started}
    report_path = out / "injection_report.json"
    _write_json(report_path, report)
    plot_path = Path(plot_injection(plot_view(report), out / "injection_report.png"))
    return AdaptResult(model_path=model_path, report_path=report_path, plot_path=plot_path, model_sha256=sha,
                       train_exposures=train, heldout_exposures=held, report=report)
