"""What a survey is, as configuration: bands, camera epochs, CCD geometry, pixel scale, headers.

A :class:`Survey` selects what the code accepts. PAUS (:func:`paus_survey`) is the default; any
other imaging survey runs with its own JSON file (:func:`load_survey`, ``lumos survey init``),
selected by ``--survey FILE`` on the command line or ``LUMOS_SURVEY`` in the pipeline
(:func:`resolve_survey`).

File format (JSON; every key but ``name`` and ``bands`` optional)::

    {
      "name": "sdss-gri",
      "pixel_scale": 0.396,                      # arcsec / pixel
      "n_epochs": 1,                             # camera epochs (PAUS: 2)
      "ccd_shape": [1489, 2048],                 # (ny, nx) pixels
      "n_ccds": 1,
      "psf_fwhm_unit": "arcsec",                 # unit of the PSF FWHM header value
      "model_bands": ["g", "r", "i"],            # bands a new model embeds, in row order (default: all)
      "flux_error_floor": 0.011,                 # fractional flux error of the PSF / catalogue models
      "neighbour_error_floor": 0.025,            # fractional error of the fitted neighbours' light
      "method_error_floors": {"optimal": 0.02},  # a method's own flux_error_floor (optional)
      "method_neighbour_error_floors": {"lumos": 0.03},  # a method's own neighbour_error_floor (optional)
      "psf_flux_correction": true,               # correct each exposure's PSF model with its stars
      "aperture_correction": false,              # do not put the fluxes on the targets' large apertures' scale (default on)
      "coadd_outlier_fraction": 0.01,            # prior probability of a bad exposure in the co-adds (default 0)
      "bands": [
        {"name": "g", "wavelength_nm": 477.0, "zero_point": 28.3, "exptime": 53.9},
        ...
      ],
      "header": {                                # quantity -> keyword and/or default
        "band": {"keyword": "FILTER"},
        "psf_fwhm": {"keyword": "SEEING", "default": 1.4},  # "from_stars": true measures it
        "gain": {"default": 1.0}
      }
    }

``zero_point`` is the AB magnitude of a source giving 1 e-/s in that band; ``exptime`` the
default exposure time (s). A header quantity is read from its ``keyword`` and falls back to its
``default`` when the keyword is absent; a quantity with neither is required. ``psf_fwhm`` and
``psf_beta`` may also say ``"from_stars": true``: without its keyword the value is measured on
each exposure's own stars (:func:`lumos_ops.photometry.psf_stars.measure_psf_fwhm`), and its
default, if any, serves only a frame with too few stars. ``docs/surveys.md``
describes every quantity with its unit.

A LUMOS model embeds each (band, camera epoch) in one row, ``band index + n_bands * epoch`` over
the bands it was trained for (checkpoint metadata ``"bands"``, ``"n_epochs"``). A model trained
by ``lumos train`` on a survey's training set embeds its ``model_bands`` (default: all its bands;
:meth:`Survey.embedding_row`); for PAUS the 40 narrow bands, so that rows 0-79 are those of every
PAUS checkpoint. :meth:`Survey.band_epoch_index` is the row over every band of the survey.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lumos_ops.constants import (
    BROAD_BANDS,
    CCD_SHAPE,
    DEFAULT_COADD_OUTLIER_FRACTION,
    DEFAULT_FLUX_ERROR_FLOOR,
    DEFAULT_NEIGHBOUR_ERROR_FLOOR,
    N_CCDS,
    N_EPOCHS,
    NB_BANDS,
    PIXEL_SCALE,
    band_centre_nm,
    band_exptime,
)
from lumos_ops.exceptions import BadInputError, InputFileError

__all__ = [
    "BandSpec",
    "HeaderKey",
    "Survey",
    "UnknownBandError",
    "HEADER_QUANTITIES",
    "SURVEY_ENV",
    "paus_survey",
    "load_survey",
    "resolve_survey",
    "current_survey",
    "use_survey",
]

SURVEY_ENV: str = "LUMOS_SURVEY"
"""Environment variable naming the survey file of the pipeline (unset: PAUS)."""

HEADER_QUANTITIES: dict[str, str] = {
    "band": "filter name, one of the survey's bands",
    "exptime": "exposure time (s)",
    "psf_fwhm": "PSF FWHM (psf_fwhm_unit)",
    "gain": "e- per pixel unit (ADU); default 1",
    "psf_beta": "Moffat beta of the PSF",
    "epoch": "camera epoch (0 ... n_epochs - 1); default 0",
    "zero_point": "AB zero point for 1 e-/s",
    "saturate": "saturation level (pixel units)",
    "expnum": "exposure number",
    "ccdnum": "CCD number",
    "mjd": "modified Julian date of the exposure start",
}
"""Header quantities a survey file can map, with their meaning and units."""

_REQUIRED = ("band", "exptime", "psf_fwhm")

# Broad-band centres (nm) of the PAUCam u g r i z filters.
_PAUS_BROAD_NM = {"u": 365.0, "g": 475.0, "r": 630.0, "i": 770.0, "z": 900.0}


class UnknownBandError(BadInputError, ValueError):
    """A band is not one of the selected survey's bands; the message names the survey file."""


@dataclasses.dataclass(frozen=True)
class BandSpec:
    """One filter of a survey.

    Attributes
    ----------
    name : str
        Name as written in the exposure header (e.g. ``"NB685"``, ``"r"``).
    wavelength_nm : float
        Central wavelength (nm).
    zero_point : float or None
        AB magnitude of a source giving 1 e-/s; None when the exposures carry their own.
    exptime : float or None
        Default exposure time (s).
    """

    name: str
    wavelength_nm: float
    zero_point: float | None = None
    exptime: float | None = None


@dataclasses.dataclass(frozen=True)
class HeaderKey:
    """Where one header quantity comes from: a keyword, a default when it is absent, or both.

    ``from_stars`` (``psf_fwhm`` and ``psf_beta`` only): where the keyword is absent, the value is
    measured on the exposure's own stars (:mod:`lumos_ops.photometry.psf_stars`); the default then
    serves only a frame with too few stars. ``psf_beta`` is measured only with the FWHM (one fit).
    """

    keyword: str | None = None
    default: float | str | None = None
    from_stars: bool = False


def _paus_header() -> dict[str, HeaderKey]:
    keys = {"band": "FILTER", "exptime": "EXPTIME", "psf_fwhm": "PSFFWHM", "gain": "GAIN", "psf_beta": "PSFBETA",
            "epoch": "EPOCH", "zero_point": "ZP", "saturate": "SATURATE", "expnum": "EXPNUM", "ccdnum": "CCDNUM",
            "mjd": "MJD-OBS"}
    header = {q: HeaderKey(keyword=k) for q, k in keys.items()}
    header["gain"] = HeaderKey(keyword="GAIN", default=1.0)
    header["epoch"] = HeaderKey(keyword="EPOCH", default=0)
    return header


@dataclasses.dataclass(frozen=True)
class Survey:
    """A survey's bands, camera epochs, CCD geometry, pixel scale and header mapping.

    Attributes
    ----------
    name : str
        Short name (``"paus"``).
    bands : tuple of BandSpec
        The filters, in the order new models index them.
    n_epochs : int
        Camera epochs (configurations whose images differ, e.g. before/after a baffle change).
    ccd_shape : tuple of int
        CCD image shape (ny, nx) in pixels.
    n_ccds : int
        CCDs per exposure.
    pixel_scale : float
        Pixel scale (arcsec / pixel).
    psf_fwhm_unit : str
        ``"arcsec"`` or ``"pixel"``: unit of the header's PSF FWHM.
    header : dict of str to HeaderKey
        Where each quantity of :data:`HEADER_QUANTITIES` is read.
    source : str
        The file the survey was read from, or ``"<built-in paus>"``; named in every error.
    model_bands : tuple of str or None
        Bands a new LUMOS model for this survey embeds, in row order; None: every band.
    flux_error_floor : float
        Fraction of the flux added in quadrature to every per-exposure flux error: the error of the
        survey's PSF and catalogue models, shared by all exposures of a source
        (:mod:`lumos_ops.photometry.error_floor`; measure it with ``lumos inject``). 0 turns it off.
    neighbour_error_floor : float
        Fraction of the light of the catalogued neighbours a joint fit took out of a blended
        target's stamps (``neighbour_light``, e-/s) added in quadrature to its error: their models'
        error, seen through the target's weights (measure it with ``lumos inject``). 0 turns it off.
    method_error_floors : mapping of str to float
        A method's own ``flux_error_floor`` (method name -> fraction), where its PSF and catalogue
        models err by another amount than the others': a LUMOS model trained on galaxies with the
        survey's own PSF needs less than the classical methods, whose Moffat model misreads them
        (``lumos adapt`` measures each, docs/adapt.md stage 5). Methods not named take
        ``flux_error_floor``; :meth:`error_floor_for`.
    method_neighbour_error_floors : mapping of str to float
        A method's own ``neighbour_error_floor`` (method name -> fraction of the neighbours' light):
        a joint fit leaves the same residual of a neighbour's model in every method's stamps, but
        each method reads it through its own weights (LUMOS through the network), so they ask for
        different floors (``lumos inject`` prints each method's; ``lumos adapt`` measures each on
        its blended pairs). Methods not named take ``neighbour_error_floor``;
        :meth:`neighbour_error_floor_for`.
    psf_flux_correction : bool
        Correct every method's fluxes on each exposure for its PSF model's error, measured with
        galaxies drawn with the exposure's own stars' PSF (:mod:`lumos_ops.flux_correction`). For
        surveys whose exposures carry enough stars (>= 10 bright isolated ones); off by default.
    aperture_correction : bool
        Put every method's fluxes on each exposure on the scale of its bright isolated targets'
        apertures that hold 98 % of their model light (:mod:`lumos_ops.aperture_correction`): the
        PSF model's and the catalogue models' shared error, measured on the targets themselves. On
        by default; an exposure with fewer than 30 usable targets at SNR >= 40 is not corrected.
        Not with ``psf_flux_correction``, which takes precedence.
    coadd_outlier_fraction : float
        Prior probability that one exposure's measurement of a source is bad (a cosmic ray, a
        satellite trail, an artefact or undetected source under that exposure only): the LUMOS
        co-adds give each exposure's likelihood a broad component of this weight, so that one
        exposure far from the others' consensus stops pulling the co-add
        (:func:`lumos_ops.lumos.coadd.coadd_likelihoods`, ``outlier_fraction``; docs/likelihood.md
        §3). 0 (the default) turns it off.
    """

    name: str
    bands: tuple[BandSpec, ...]
    n_epochs: int = 1
    ccd_shape: tuple[int, int] = CCD_SHAPE
    n_ccds: int = 1
    pixel_scale: float = PIXEL_SCALE
    psf_fwhm_unit: str = "arcsec"
    header: Mapping[str, HeaderKey] = dataclasses.field(default_factory=_paus_header)
    source: str = "<built-in>"
    model_bands: tuple[str, ...] | None = None
    flux_error_floor: float = DEFAULT_FLUX_ERROR_FLOOR
    neighbour_error_floor: float = DEFAULT_NEIGHBOUR_ERROR_FLOOR
    method_error_floors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    method_neighbour_error_floors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    psf_flux_correction: bool = False
    aperture_correction: bool = True
    coadd_outlier_fraction: float = DEFAULT_COADD_OUTLIER_FRACTION

    def __post_init__(self) -> None:
        where = self.source
        if not self.bands:
            raise BadInputError(f"{where}: the survey has no bands; list them under \"bands\"")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise BadInputError(f"{where}: band names repeat in \"bands\": {names}")
        for b in self.bands:
            if not b.name or b.name != b.name.strip():
                raise BadInputError(f"{where}: band name {b.name!r} is empty or has surrounding spaces")
            if not (math.isfinite(b.wavelength_nm) and b.wavelength_nm > 0):
                raise BadInputError(f"{where}: band {b.name}: wavelength_nm={b.wavelength_nm} must be > 0 nm")
            if b.exptime is not None and not b.exptime > 0:
                raise BadInputError(f"{where}: band {b.name}: exptime={b.exptime} must be > 0 s")
        if self.n_epochs < 1:
            raise BadInputError(f"{where}: n_epochs={self.n_epochs} must be >= 1")
        if self.n_ccds < 1:
            raise BadInputError(f"{where}: n_ccds={self.n_ccds} must be >= 1")
        if len(self.ccd_shape) != 2 or min(self.ccd_shape) < 1:
            raise BadInputError(f"{where}: ccd_shape={list(self.ccd_shape)} must be [ny, nx] pixels")
        if not (math.isfinite(self.pixel_scale) and self.pixel_scale > 0):
            raise BadInputError(f"{where}: pixel_scale={self.pixel_scale} must be > 0 arcsec/pixel")
        for name in ("flux_error_floor", "neighbour_error_floor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise BadInputError(f"{where}: {name}={value} must lie in [0, 1) (a fraction of the flux)")
        for name in ("method_error_floors", "method_neighbour_error_floors"):
            object.__setattr__(self, name, _method_floors(where, name, getattr(self, name)))
        value = self.coadd_outlier_fraction
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value < 0.5):
            raise BadInputError(f"{where}: coadd_outlier_fraction={value!r} must lie in [0, 0.5) (a probability per exposure)")
        object.__setattr__(self, "coadd_outlier_fraction", float(value))
        for name in ("psf_flux_correction", "aperture_correction"):
            if not isinstance(getattr(self, name), bool):
                raise BadInputError(f"{where}: {name}={getattr(self, name)!r} must be true or false")
        if self.psf_fwhm_unit not in ("arcsec", "pixel"):
            raise BadInputError(f"{where}: psf_fwhm_unit={self.psf_fwhm_unit!r} must be \"arcsec\" or \"pixel\"")
        if self.model_bands is not None:
            if not self.model_bands:
                raise BadInputError(f"{where}: model_bands is empty; list bands of \"bands\" or omit it")
            stray = [b for b in self.model_bands if b not in names]
            if stray or len(set(self.model_bands)) != len(self.model_bands):
                raise BadInputError(
                    f"{where}: model_bands {list(self.model_bands)} must name distinct bands of \"bands\" ({names})"
                )
        unknown = sorted(set(self.header) - set(HEADER_QUANTITIES))
        if unknown:
            raise BadInputError(f"{where}: unknown header quantities {unknown}; known: {sorted(HEADER_QUANTITIES)}")
        for q, key in self.header.items():
            if q != "band" and key.default is not None and (
                isinstance(key.default, bool) or not isinstance(key.default, int | float) or not math.isfinite(key.default)
            ):
                raise BadInputError(f"{where}: header.{q} default {key.default!r} must be a number ({HEADER_QUANTITIES[q]})")
        for q, key in self.header.items():
            if key.from_stars and q not in ("psf_fwhm", "psf_beta"):
                raise BadInputError(f"{where}: header.{q}: from_stars is for psf_fwhm and psf_beta only")
        for q in _REQUIRED:
            key = self.header.get(q)
            if key is None or (key.keyword is None and key.default is None and not key.from_stars):
                raise BadInputError(f"{where}: header quantity {q!r} ({HEADER_QUANTITIES[q]}) needs a keyword or a default"
                                    + (" (or from_stars)" if q == "psf_fwhm" else ""))

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names in survey order."""
        return tuple(b.name for b in self.bands)

    def band(self, name: str) -> BandSpec:
        """The band called ``name``; :class:`UnknownBandError` naming the survey file otherwise."""
        for b in self.bands:
            if b.name == name:
                return b
        raise UnknownBandError(
            f"unknown band {name!r} for survey {self.name} ({self.source}); configured bands: "
            f"{', '.join(self.band_names)}; add it to the survey file or select another with --survey / {SURVEY_ENV}"
        )

    def check_epoch(self, epoch: int) -> int:
        """``epoch`` if it is one of the survey's camera epochs, else a :class:`BadInputError`."""
        if epoch not in range(self.n_epochs):
            raise BadInputError(
                f"camera epoch {epoch} is not one of survey {self.name}'s epochs 0...{self.n_epochs - 1} ({self.source})"
            )
        return int(epoch)

    @property
    def embedding_bands(self) -> tuple[str, ...]:
        """Bands a new LUMOS model for this survey embeds, in row order (``model_bands``, else all)."""
        return self.band_names if self.model_bands is None else tuple(self.model_bands)

    def band_epoch_index(self, band: str, epoch: int) -> int:
        """Row of the band x epoch embedding of a model embedding every band of this survey:
        ``band index + n_bands * epoch``."""
        names = self.band_names
        self.band(band)
        return names.index(band) + len(names) * self.check_epoch(epoch)

    def embedding_row(self, band: str, epoch: int) -> int:
        """Row of ``band`` at ``epoch`` in the embedding of a new model trained for this survey:
        ``index in embedding_bands + len(embedding_bands) * epoch`` (PAUS: the 80 rows of every
        PAUS checkpoint; other surveys without ``model_bands``: :meth:`band_epoch_index`).

        Raises
        ------
        UnknownBandError
            ``band`` is not a survey band, or one that new models do not embed (PAUS broad bands).
        BadInputError
            ``epoch`` is not a camera epoch of the survey.
        """
        self.band(band)
        names = self.embedding_bands
        if band not in names:
            raise UnknownBandError(
                f"band {band!r} of survey {self.name} ({self.source}) has no LUMOS embedding row; embedded bands: "
                f"{', '.join(names)} (model_bands)"
            )
        return names.index(band) + len(names) * self.check_epoch(epoch)

    def psf_fwhm_arcsec(self, value: float) -> float:
        """A header PSF FWHM in arcsec."""
        return float(value) * (self.pixel_scale if self.psf_fwhm_unit == "pixel" else 1.0)

    def error_floor_for(self, method: str) -> float:
        """The flux error floor of ``method`` (fraction of the flux): its own, or ``flux_error_floor``."""
        return self.method_error_floors.get(method, self.flux_error_floor)

    def neighbour_error_floor_for(self, method: str) -> float:
        """The neighbour error floor of ``method`` (fraction of the fitted neighbours' light): its
        own, or ``neighbour_error_floor``."""
        return self.method_neighbour_error_floors.get(method, self.neighbour_error_floor)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready description (the file format of :func:`load_survey`)."""
        return {
            "name": self.name,
            "pixel_scale": self.pixel_scale,
            "n_epochs": self.n_epochs,
            "ccd_shape": list(self.ccd_shape),
            "n_ccds": self.n_ccds,
            "psf_fwhm_unit": self.psf_fwhm_unit,
            "bands": [{k: v for k, v in dataclasses.asdict(b).items() if v is not None} for b in self.bands],
            "header": {q: {k: v for k, v in dataclasses.asdict(h).items() if v is not None and not (k == "from_stars" and not v)}
                       for q, h in self.header.items()},
            **({} if self.model_bands is None else {"model_bands": list(self.model_bands)}),
            "flux_error_floor": self.flux_error_floor,
            "neighbour_error_floor": self.neighbour_error_floor,
            **({"method_error_floors": dict(self.method_error_floors)} if self.method_error_floors else {}),
            **({"method_neighbour_error_floors": dict(self.method_neighbour_error_floors)}
               if self.method_neighbour_error_floors else {}),
            **({"psf_flux_correction": True} if self.psf_flux_correction else {}),
            **({} if self.aperture_correction else {"aperture_correction": False}),
            **({"coadd_outlier_fraction": self.coadd_outlier_fraction}
               if self.coadd_outlier_fraction != DEFAULT_COADD_OUTLIER_FRACTION else {}),
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the survey as JSON to ``path``, atomically; returns the path."""
        from lumos_ops.io.atomic import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "<dict>") -> Survey:
        """Build a survey from the JSON structure of :meth:`to_dict`; errors name ``source``."""
        if not isinstance(values, Mapping):
            raise BadInputError(f"{source}: a survey file holds one JSON object, got {type(values).__name__}")
        known = {"name", "pixel_scale", "n_epochs", "ccd_shape", "n_ccds", "psf_fwhm_unit", "bands", "header",
                 "model_bands", "flux_error_floor", "neighbour_error_floor", "method_error_floors",
                 "method_neighbour_error_floors",
                 "psf_flux_correction", "aperture_correction", "coadd_outlier_fraction"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadInputError(f"{source}: unknown keys {unknown}; a survey file has {sorted(known)}")
        if "name" not in values or "bands" not in values:
            raise BadInputError(f"{source}: a survey file needs \"name\" and \"bands\"")
        if not isinstance(values["bands"], list):
            raise BadInputError(f"{source}: \"bands\" must be a list of {{\"name\": ..., \"wavelength_nm\": ...}} objects")
        bands = []
        for i, b in enumerate(values["bands"]):
            if not isinstance(b, Mapping) or "name" not in b or "wavelength_nm" not in b:
                raise BadInputError(f"{source}: bands[{i}] needs \"name\" and \"wavelength_nm\" (nm)")
            extra = sorted(set(b) - {"name", "wavelength_nm", "zero_point", "exptime"})
            if extra:
                raise BadInputError(f"{source}: bands[{i}] has unknown keys {extra}")
            try:
                bands.append(BandSpec(
                    name=str(b["name"]), wavelength_nm=float(b["wavelength_nm"]),
                    zero_point=None if b.get("zero_point") is None else float(b["zero_point"]),
                    exptime=None if b.get("exptime") is None else float(b["exptime"]),
                ))
            except (TypeError, ValueError):
                raise BadInputError(f"{source}: bands[{i}]: wavelength_nm, zero_point and exptime must be numbers") from None
        header = _paus_header()
        if not isinstance(values.get("header") or {}, Mapping):
            raise BadInputError(f"{source}: \"header\" must be an object of quantity -> keyword")
        for q, spec in (values.get("header") or {}).items():
            if isinstance(spec, str):
                spec = {"keyword": spec}
            if not isinstance(spec, Mapping) or set(spec) - {"keyword", "default", "from_stars"}:
                raise BadInputError(
                    f"{source}: header.{q} must be a keyword string or {{\"keyword\": K, \"default\": V}}"
                    f" (psf_fwhm and psf_beta also \"from_stars\": true), got {spec!r}"
                )
            if not isinstance(spec.get("from_stars", False), bool):
                raise BadInputError(f"{source}: header.{q}.from_stars must be true or false, got {spec['from_stars']!r}")
            header[q] = HeaderKey(keyword=spec.get("keyword"), default=spec.get("default"),
                                  from_stars=bool(spec.get("from_stars", False)))
        model_bands = values.get("model_bands")
        if model_bands is not None and (not isinstance(model_bands, list) or not all(isinstance(b, str) for b in model_bands)):
            raise BadInputError(f"{source}: model_bands must be a list of band names, got {model_bands!r}")
        def number(key: str, kind: type, default: Any) -> Any:
            value = values.get(key, default)
            try:
                if isinstance(value, bool) or (kind is int and float(value) != int(value)):
                    raise ValueError
                return kind(value)
            except (TypeError, ValueError):
                raise BadInputError(f"{source}: {key}={value!r} must be a number ({kind.__name__})") from None

        shape = values.get("ccd_shape", CCD_SHAPE)
        if not isinstance(shape, list | tuple) or len(shape) != 2 or not all(isinstance(v, int) for v in shape):
            raise BadInputError(f"{source}: ccd_shape={shape!r} must be [ny, nx] in pixels")
        return cls(
            name=str(values["name"]),
            bands=tuple(bands),
            n_epochs=number("n_epochs", int, 1),
            ccd_shape=(int(shape[0]), int(shape[1])),
            n_ccds=number("n_ccds", int, 1),
            pixel_scale=number("pixel_scale", float, PIXEL_SCALE),
            psf_fwhm_unit=str(values.get("psf_fwhm_unit", "arcsec")),
            header=header,
            source=source,
            model_bands=None if model_bands is None else tuple(model_bands),
            flux_error_floor=number("flux_error_floor", float, DEFAULT_FLUX_ERROR_FLOOR),
            neighbour_error_floor=number("neighbour_error_floor", float, DEFAULT_NEIGHBOUR_ERROR_FLOOR),
            method_error_floors=values.get("method_error_floors", {}),
            method_neighbour_error_floors=values.get("method_neighbour_error_floors", {}),
            psf_flux_correction=values.get("psf_flux_correction", False),
            aperture_correction=values.get("aperture_correction", True),
            coadd_outlier_fraction=values.get("coadd_outlier_fraction", DEFAULT_COADD_OUTLIER_FRACTION),
        )

def _method_floors(where: str, name: str, values: Any) -> dict[str, float]:
    """``values`` (a survey's ``method_error_floors`` or ``method_neighbour_error_floors``) checked:
    method names to fractions in [0, 1); errors name the survey file ``where`` and the key."""
    if not isinstance(values, Mapping):
        raise BadInputError(f"{where}: {name} must map method names to fractions, got {values!r}")
    floors = {}
    for method, value in values.items():
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if not isinstance(method, str) or not method or not (math.isfinite(number) and 0.0 <= number < 1.0):
            raise BadInputError(f"{where}: {name}[{method!r}]={value!r} must be a method name and a fraction in [0, 1)")
        floors[method] = float(number)
    return floors


def paus_survey() -> Survey:
    """The built-in PAUS description: NB455...NB845 and u g r i z, two epochs, 8 CCDs of
    4096 x 2048 pixels at 0.263 arcsec, PAUS header keywords (``shared/GUIDE.md``).

    The bands carry no zero point: PAUS exposures carry their own (``ZP``), and one without it
    stays uncalibrated (left out of co-adds). The simulator's nominal zero points are
    :func:`lumos_ops.sim.bands.band_zero_point`.
    """
    nb = tuple(BandSpec(b, band_centre_nm(b), None, band_exptime(b)) for b in NB_BANDS)
    broad = tuple(BandSpec(b, _PAUS_BROAD_NM[b]) for b in BROAD_BANDS)
    return Survey(name="paus", bands=nb + broad, n_epochs=N_EPOCHS, ccd_shape=CCD_SHAPE, n_ccds=N_CCDS,
                  pixel_scale=PIXEL_SCALE, psf_fwhm_unit="arcsec", header=_paus_header(), source="<built-in paus>",
                  model_bands=NB_BANDS)


def load_survey(path: str | os.PathLike[str]) -> Survey:
    """Read a survey file (JSON, format in the module docstring).

    Raises
    ------
    InputFileError
        The file is missing or not JSON.
    BadInputError
        A key is unknown or a value invalid; the message names the file and the key.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such survey file; write one with `lumos survey init --out {p} ...`")
    try:
        values = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{p}: not a JSON survey file ({exc})") from None
    return Survey.from_dict(values, source=str(p))


def resolve_survey(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Survey:
    """The survey selected by ``path`` (``--survey``), else ``LUMOS_SURVEY``, else PAUS."""
    env = os.environ if environ is None else environ
    chosen = path if path not in (None, "") else env.get(SURVEY_ENV) or None
    return paus_survey() if chosen is None else load_survey(chosen)


_CURRENT: contextvars.ContextVar[Survey | None] = contextvars.ContextVar("lumos_survey", default=None)
_PAUS_CACHE: list[Survey] = []


def current_survey() -> Survey:
    """The survey of the enclosing :func:`use_survey` block, else PAUS.

    What :func:`lumos_ops.io.exposure.read_exposure` uses when it is given no survey, so that code
    reading exposures on behalf of a command (training-set generation, transfer pairs) follows the
    command's ``--survey``.
    """
    chosen = _CURRENT.get()
    if chosen is not None:
        return chosen
    if not _PAUS_CACHE:
        _PAUS_CACHE.append(paus_survey())
    return _PAUS_CACHE[0]


@contextlib.contextmanager
def use_survey(survey: Survey | None) -> Iterator[Survey]:
    """Make ``survey`` (None: PAUS) the :func:`current_survey` inside the ``with`` block (this
    thread or task only)."""
    token = _CURRENT.set(survey)
    try:
        yield current_survey()
    finally:
        _CURRENT.reset(token)
