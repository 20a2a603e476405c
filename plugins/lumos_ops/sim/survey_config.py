"""Validated configuration of the PAUCam-like survey simulator."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any

from lumos_ops.constants import CCD_SHAPE, N_CCDS, N_EPOCHS, NB_BANDS, PIXEL_SCALE, SEEING_RANGE, TRAYS, band_tray
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.sim.bands import REFERENCE_ZP

__all__ = ["Artefacts", "SurveyConfig", "load_survey_config"]


@dataclasses.dataclass(frozen=True)
class Artefacts:
    """Switches for what makes real PAUCam images hard (all on by default).

    Attributes
    ----------
    sky : bool
        Sky background (~6 e-/s/pixel, band and night dependent).
    scattered_light : bool
        Band-, epoch- and CCD-dependent smooth scattered-light pattern.
    shot_noise : bool
        Poisson noise on sky and sources.
    read_noise : bool
        Read noise with heavy (Student-t) tails and per-amplifier offsets.
    banding : bool
        Row and column (banding) noise pattern.
    stars : bool
        Stars, the brightest saturated with bleed trails clipped at ``SATURATE``.
    cosmic_rays : bool
        Cosmic-ray hits and tracks.
    bad_columns : bool
        A few bad columns per CCD: NaN (masked) and hot.
    crosstalk : bool
        Crosstalk ghosts of bright pixels between the two amplifiers of a CCD.
    faint_galaxies : bool
        Un-catalogued galaxies fainter than the catalogue limit (blends, confusion).
    """

    sky: bool = True
    scattered_light: bool = True
    shot_noise: bool = True
    read_noise: bool = True
    banding: bool = True
    stars: bool = True
    cosmic_rays: bool = True
    bad_columns: bool = True
    crosstalk: bool = True
    faint_galaxies: bool = True

    @classmethod
    def none(cls) -> Artefacts:
        """Every switch off: noiseless images of the catalogue galaxies only."""
        return cls(**{f.name: False for f in dataclasses.fields(cls)})


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise LumosValueError(f"SurveyConfig.{name} must be a finite number > 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class SurveyConfig:
    """What to simulate.

    Geometry: exposure ``e`` holds one filter tray; its CCD ``k`` (1-based ``CCDNUM``) sees band
    ``TRAYS[tray][k - 1]`` (the PAUCam filter-to-CCD map) and only CCDs whose band is in
    ``bands`` are written. The focal-plane layout is not modelled: every CCD of an exposure is
    pointed at the field centre plus the exposure's dither plus a small fixed CCD offset, so each
    galaxy is observed about ``n_exposures * n_epochs`` times per band, on different pixels.

    Attributes
    ----------
    ra_center, dec_center : float
        Field centre (deg); default COSMOS.
    field_size_arcmin : (float, float) or None
        Field width (RA direction) and height (arcmin) in which galaxies are placed; default the
        CCD footprint (``ccd_shape * pixel_scale``).
    n_galaxies : int or None
        Number of catalogue galaxies; None derives it from ``galaxy_density``.
    galaxy_density : float
        Catalogue galaxies (17.5 < i < 23) per arcmin^2 (COSMOS: about 9).
    i_range : (float, float)
        Catalogue magnitude range (AB, i band).
    faint_i_range : (float, float)
        Magnitude range of un-catalogued faint galaxies (same number-count slope).
    star_density : float
        Stars (14 < i < 22.5) per arcmin^2.
    bright_star_density : float
        Saturated stars (11 < i < 13) per arcmin^2; at least one in the field when stars are on.
    bands : tuple of str
        Narrow bands to observe (any of NB455...NB845).
    n_exposures : int
        Exposures per band and camera epoch.
    n_epochs : int
        1 (epoch 0 only) or 2 (before and after the baffle intervention).
    nights : int
        Observing nights per epoch over which the exposures are spread.
    first_nights : (str, str)
        ISO date of the first night of epoch 0 and epoch 1.
    ccd_shape : (int, int)
        CCD shape (rows, columns); the full PAUCam CCD is (4096, 2048).
    n_ccds : int
        CCDs per exposure (1-8).
    pixel_scale : float
        arcsec / pixel.
    psf_fwhm_range : (float, float)
        Range of the per-exposure seeing (arcsec); drawn log-normally around ``psf_fwhm_median`` and
        clipped.
    psf_fwhm_median : float
        Median seeing (arcsec) of the log-normal draw, 0.95" at the PAUS site.
    psf_fwhm_scatter : float
        Log-normal scatter of the seeing (0.2 at the PAUS site); a wider one (with a wider
        ``psf_fwhm_range``) gives training exposures the PSF sizes of other surveys.
    psf_beta_range : (float, float)
        Range of the per-exposure Moffat beta.
    sky_rate : float
        NB685 sky level (e-/s/pixel); other bands scale with wavelength.
    zp_nb685 : float
        Nominal NB685 zero point (AB mag giving 1 e-/s); other bands follow a smooth efficiency
        curve. The default 23.94 makes 4.9 e-/s the flux of a flat-spectrum i = 21.7 galaxy
        inside the PAUS aperture (62.5 % of its light), as in the GUIDE's real exposure.
    dither_fraction : float
        Dither amplitude as a fraction of the CCD size (uniform in +-fraction/2... +-fraction).
    catalog_shape_error : float
        Errors of the published catalogue shapes (0 = exact): ``error`` dex on r50 and Sersic n,
        ``error`` on q and a q-dependent error on pa; the true values are kept as ``*_true``
        columns and used for rendering (paper §2.1.2: catalogue profile errors).
    stamp_size : int
        Side (pixels) of the stamps galaxies are rendered on.
    artefacts : Artefacts
        Switches of the image defects.
    seed : int
        Everything is reproducible from it.
    threads : int
        Torch CPU threads while rendering; byte-identical files need the same seed and threads.
    """

    ra_center: float = 150.119
    dec_center: float = 2.206
    field_size_arcmin: tuple[float, float] | None = None
    n_galaxies: int | None = None
    galaxy_density: float = 9.0
    i_range: tuple[float, float] = (17.5, 23.0)
    faint_i_range: tuple[float, float] = (23.0, 25.0)
    star_density: float = 0.5
    bright_star_density: float = 0.02
    bands: tuple[str, ...] = ("NB615", "NB655", "NB685")
    n_exposures: int = 2
    n_epochs: int = 2
    nights: int = 1
    first_nights: tuple[str, str] = ("2016-02-08", "2017-03-01")
    ccd_shape: tuple[int, int] = CCD_SHAPE
    n_ccds: int = N_CCDS
    pixel_scale: float = PIXEL_SCALE
    psf_fwhm_range: tuple[float, float] = SEEING_RANGE
    psf_beta_range: tuple[float, float] = (3.0, 4.0)
    psf_fwhm_median: float = 0.95
    psf_fwhm_scatter: float = 0.2
    sky_rate: float = 6.0
    zp_nb685: float = REFERENCE_ZP
    dither_fraction: float = 0.08
    catalog_shape_error: float = 0.0
    stamp_size: int = 64
    artefacts: Artefacts = dataclasses.field(default_factory=Artefacts)
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("bands", tuple(str(b) for b in self.bands))
        set_("ccd_shape", tuple(int(v) for v in self.ccd_shape))
        set_("first_nights", tuple(str(v) for v in self.first_nights))
        for name in ("i_range", "faint_i_range", "psf_fwhm_range", "psf_beta_range"):
            set_(name, tuple(float(v) for v in getattr(self, name)))
        if self.field_size_arcmin is not None:
            set_("field_size_arcmin", tuple(float(v) for v in self.field_size_arcmin))
        if isinstance(self.artefacts, dict):
            try:
                set_("artefacts", Artefacts(**self.artefacts))
            except TypeError as exc:
                raise LumosValueError(f"SurveyConfig.artefacts: {exc}; valid switches: "
                                      f"{[f.name for f in dataclasses.fields(Artefacts)]}") from None
        if not -90.0 <= self.dec_center <= 90.0:
            raise LumosValueError(f"SurveyConfig.dec_center must be in [-90, 90] deg, got {self.dec_center}")
        if not self.bands:
            raise LumosValueError("SurveyConfig.bands must name at least one band, e.g. ('NB685',)")
        for band in self.bands:
            if band not in NB_BANDS:
                raise LumosValueError(f"SurveyConfig.bands: unknown band {band!r}; expected NB455...NB845")
        if len(set(self.bands)) != len(self.bands):
            raise LumosValueError(f"SurveyConfig.bands has duplicates: {self.bands}")
        if not (isinstance(self.n_ccds, int) and 1 <= self.n_ccds <= N_CCDS):
            raise LumosValueError(f"SurveyConfig.n_ccds must be an integer in 1..{N_CCDS}, got {self.n_ccds!r}")
        for band in self.bands:
            slot = TRAYS[band_tray(band)].index(band)
            if slot >= self.n_ccds:
                raise LumosValueError(
                    f"SurveyConfig.bands: {band} sits in front of CCD {slot + 1} of its tray but n_ccds="
                    f"{self.n_ccds}; raise n_ccds to {slot + 1} or drop the band"
                )
        if len(self.ccd_shape) != 2 or min(self.ccd_shape) < 64:
            raise LumosValueError(f"SurveyConfig.ccd_shape must be (rows, columns) >= 64, got {self.ccd_shape}")
        for name in ("n_exposures", "nights"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise LumosValueError(f"SurveyConfig.{name} must be an integer >= 1, got {value!r}")
        if self.n_epochs not in range(1, N_EPOCHS + 1):
            raise LumosValueError(f"SurveyConfig.n_epochs must be 1 or 2, got {self.n_epochs!r}")
        for night in self.first_nights:
            try:
                _dt.date.fromisoformat(night)
            except ValueError:
                raise LumosValueError(f"SurveyConfig.first_nights: {night!r} is not an ISO date YYYY-MM-DD") from None
        if len(self.first_nights) != 2:
            raise LumosValueError("SurveyConfig.first_nights needs two ISO dates (epoch 0, epoch 1)")
        if self.n_galaxies is not None and not (isinstance(self.n_galaxies, int) and self.n_galaxies >= 0):
            raise LumosValueError(f"SurveyConfig.n_galaxies must be an integer >= 0 or None, got {self.n_galaxies!r}")
        for name in ("pixel_scale", "sky_rate", "zp_nb685", "psf_fwhm_median"):
            _positive(name, getattr(self, name))
        if not (math.isfinite(self.psf_fwhm_scatter) and 0.0 <= self.psf_fwhm_scatter <= 1.0):
            raise LumosValueError(f"SurveyConfig.psf_fwhm_scatter must be in [0, 1], got {self.psf_fwhm_scatter!r}")
        for name in ("galaxy_density", "star_density", "bright_star_density", "dither_fraction", "catalog_shape_error"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise LumosValueError(f"SurveyConfig.{name} must be >= 0, got {value!r}")
        for name in ("i_range", "faint_i_range", "psf_fwhm_range", "psf_beta_range"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise LumosValueError(f"SurveyConfig.{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if self.psf_beta_range[0] <= 1.5:
            raise LumosValueError(f"SurveyConfig.psf_beta_range must be > 1.5 (finite Moffat flux), got {self.psf_beta_range}")
        if self.field_size_arcmin is not None:
            if len(self.field_size_arcmin) != 2 or min(self.field_size_arcmin) <= 0:
                raise LumosValueError(f"SurveyConfig.field_size_arcmin must be two positive sizes, got {self.field_size_arcmin}")
        if not (isinstance(self.stamp_size, int) and self.stamp_size >= 16):
            raise LumosValueError(f"SurveyConfig.stamp_size must be an integer >= 16, got {self.stamp_size!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise LumosValueError(f"SurveyConfig.threads must be an integer >= 1, got {self.threads!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise LumosValueError(f"SurveyConfig.seed must be a non-negative integer, got {self.seed!r}")

    @property
    def field_size(self) -> tuple[float, float]:
        """Field (width, height) in arcmin."""
        if self.field_size_arcmin is not None:
            return self.field_size_arcmin  # type: ignore[return-value]
        ny, nx = self.ccd_shape
        return (nx * self.pixel_scale / 60.0, ny * self.pixel_scale / 60.0)

    @property
    def field_area(self) -> float:
        """Field area (arcmin^2)."""
        width, height = self.field_size
        return width * height

    @property
    def n_catalog_galaxies(self) -> int:
        """Number of catalogue galaxies (``n_galaxies`` or density x area)."""
        if self.n_galaxies is not None:
            return self.n_galaxies
        return int(round(self.galaxy_density * self.field_area))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists); the seeing distribution's fields only when they
        are not the PAUS defaults, so surveys made before they existed keep their manifests."""
        values = dataclasses.asdict(self)
        for name, default in (("psf_fwhm_median", 0.95), ("psf_fwhm_scatter", 0.2)):
            if values[name] == default:
                del values[name]
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SurveyConfig:
        """Build from a plain dict (e.g. parsed YAML/JSON); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LumosValueError(f"SurveyConfig: unknown option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**values)


def load_survey_config(path: str | os.PathLike[str], **overrides: Any) -> SurveyConfig:
    """Read a :class:`SurveyConfig` from a YAML or JSON file, then apply non-None overrides."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such config file")
    text = p.read_text()
    import yaml

    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputFileError(f"{p}: cannot parse the config ({exc})") from None
    if not isinstance(values, dict):
        raise InputFileError(f"{p}: the config must be a mapping of option names to values")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SurveyConfig.from_dict(values)
