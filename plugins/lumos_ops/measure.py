"""Forced photometry of catalogue targets on one exposure, shared by the CLI, the pipeline and LUMOS.

:func:`prepare_targets` turns an exposure and a catalogue into a
:class:`~lumos_ops.target_context.TargetContext` (stamps,
PSF-convolved catalogue models, base flags); a *method* (``MEASURE_METHODS``) turns a context into
one row per target; :func:`measure_exposure` runs several methods and returns a long table.

A method is any class with a ``name`` attribute and ``measure(ctx: TargetContext) -> DataFrame``
returning one row per target, in catalogue order, with at least ``flux`` and ``flux_err`` (e-/s)
and ``flag`` (``lumos_ops.flags.Flag`` bits), plus method-specific columns. Its constructor takes
keyword-only options (e.g. ``model=`` for LUMOS).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from lumos_ops.constants import PIXEL_SCALE, STAMP_SIZE
from lumos_ops.cutouts import cut_mask, cut_stamps
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.io.catalog import target_pixels, validate_catalog
from lumos_ops.io.exposure import Exposure
from lumos_ops.target_context import MeasureMethod, TargetContext

__all__ = [
    "MEASURE_METHODS",
    "prepare_targets",
    "render_target_models",
    "get_method",
    "available_methods",
    "measure_exposure",
    "options_for",
    "LONG_COLUMNS",
]

log = logging.getLogger(__name__)

MEASURE_METHODS: dict[str, str] = {
    "aperture": "lumos_ops.photometry.aperture:AperturePhotometry",
    "modelfit": "lumos_ops.photometry.modelfit:ProfileFit",
    "optimal": "lumos_ops.photometry.optimal:OptimalWeightedSum",
    "lumos": "lumos_ops.lumos.method:LumosMethod",
}
"""Method name -> ``"module:Class"``, imported lazily by :func:`get_method`."""

LONG_COLUMNS: tuple[str, ...] = ("ref_id", "method", "x", "y", "band", "flux", "flux_err", "flag")
"""Leading columns of :func:`measure_exposure`'s output; method-specific columns follow."""

_CHUNK = 512
"""Targets measured per chunk by :func:`measure_exposure` (bounds memory, drives the progress bar)."""


def render_target_models(
    catalog: pd.DataFrame,
    dx: np.ndarray,
    dy: np.ndarray,
    *,
    psf_fwhm: float,
    psf_beta: float | None = None,
    size: int = STAMP_SIZE,
    pixel_scale: float = PIXEL_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Render the unit-flux PSF-convolved Sersic model of every catalogue row.

    Parameters
    ----------
    catalog : DataFrame
        Rows with ``r50`` (arcsec), ``sersic_n``, ``q``, ``pa`` (degrees).
    dx, dy : ndarray, shape (n,)
        Sub-pixel offsets of the targets from the stamp centre pixel ``(size//2, size//2)``.
    psf_fwhm, psf_beta : float, keyword-only
        Moffat PSF of the exposure (arcsec, beta); ``psf_beta=None`` uses the renderer's default.
    size, pixel_scale : keyword-only
        Stamp side (pixels) and pixel scale (arcsec / pixel).

    Returns
    -------
    models : ndarray, shape (n, size, size), float32
        Pixel-integrated models with unit total flux (light outside the stamp is missing).
    clipped : ndarray of bool, shape (n,)
        Rows whose Sersic index was clipped to the renderer's range (0.3-6.5).
    """
    from lumos_ops.render import render_galaxies
    from lumos_ops.render.sersic import SERSIC_N_MAX, SERSIC_N_MIN

    # The same models either way (to ~1e-6 of the peak). torch renders about twice as fast on the
    # CPU, so it is used when the process has loaded it anyway (LUMOS); numpy keeps the classical
    # methods free of the torch import.
    device = "cpu" if "torch" in sys.modules else None

    n_raw = catalog["sersic_n"].to_numpy(np.float64)
    sersic_n = np.clip(n_raw, SERSIC_N_MIN, SERSIC_N_MAX)
    if len(catalog) == 0:
        return np.zeros((0, size, size), dtype=np.float32), np.zeros(0, dtype=bool)
    psf_options = {} if psf_beta is None else {"psf_beta": float(psf_beta)}
    result = render_galaxies(
        r50=catalog["r50"].to_numpy(np.float64),
        sersic_n=sersic_n,
        q=catalog["q"].to_numpy(np.float64),
        pa=catalog["pa"].to_numpy(np.float64),
        psf_fwhm=psf_fwhm,
        dx=np.asarray(dx, dtype=np.float64),
        dy=np.asarray(dy, dtype=np.float64),
        flux=1.0,
        size=size,
        pixel_scale=pixel_scale,
        as_numpy=True,
        device=device,
        flux_outside=False,  # not used here: the per-stamp sums are skipped
        **psf_options,
    )
    return np.asarray(result.images, dtype=np.float32), sersic_n != n_raw


def prepare_targets(
    exposure: Exposure,
    catalog: pd.DataFrame,
    *,
    stamp_size: int = STAMP_SIZE,
    pixel_scale: float | None = None,
    psf_beta: float | None = None,
    neighbours: bool = True,
    mask_other_sources: bool = True,
) -> TargetContext:
    """Locate the catalogue targets on an exposure, cut their stamps and render their models.

    Parameters
    ----------
    exposure : Exposure
        From ``lumos_ops.io.exposure.read_exposure`` (e-/s per pixel).
    catalog : DataFrame
        External catalogue (see ``lumos_ops.io.catalog``); validated here, row order kept.
    stamp_size : int, keyword-only
        Side of ``stamps`` and ``models`` (pixels); 60 for LUMOS.
    pixel_scale : float or None, keyword-only
        Arcsec per pixel used to render the models; default the exposure's survey's
        (``Exposure.pixel_scale``; PAUS 0.263), the scale the PSF FWHM and catalogue sizes are in.
    psf_beta : float or None, keyword-only
        Moffat beta; default: the exposure's ``PSFBETA``, else the renderer's default (3.5).
    neighbours : bool, keyword-only
        Fit blended targets (a catalogued neighbour moves the matched filter by >= 0.1 of its
        noise) jointly and take each one's neighbours out of its stamps
        (:mod:`lumos_ops.photometry.neighbours`); False keeps the image's own pixels.
    mask_other_sources : bool, keyword-only
        Leave the pixels of other sources detected on the frame out of each target's
        model-weighted sums and LUMOS stamp, and subtract their light beyond the detections from
        every cutout (``TargetContext.mask_other_sources``).

    Returns
    -------
    TargetContext
        Targets off the image are kept (flag OFF_IMAGE, zero model).
    """
    pixel_scale = _checked_scales(exposure, stamp_size, pixel_scale)
    catalog = validate_catalog(catalog, source=exposure.path)
    x, y = target_pixels(catalog, exposure.wcs, source=exposure.path)
    return _prepare_located(exposure, catalog, x, y, stamp_size=stamp_size, pixel_scale=pixel_scale, psf_beta=psf_beta,
                            neighbours=neighbours, mask_other_sources=mask_other_sources)


def centres_on_image(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (n,): the targets whose centre (0-based pixels, x = column) lies on an image of
    ``shape`` (rows, columns), the ones :func:`measure_exposure` measures; the others are OFF_IMAGE."""
    ny, nx = shape
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)


def _checked_scales(exposure: Exposure, stamp_size: int, pixel_scale: float | None) -> float:
    """The pixel scale to render at (arcsec / pixel; default the exposure's) after checking it and
    ``stamp_size`` (pixels)."""
    if stamp_size < 1:
        raise LumosValueError(f"stamp_size must be >= 1 pixel, got {stamp_size}")
    if pixel_scale is None:
        pixel_scale = exposure.pixel_scale
    if not pixel_scale > 0:
        raise LumosValueError(f"pixel_scale must be > 0 arcsec/pixel, got {pixel_scale}")
    return pixel_scale


def _prepare_located(
    exposure: Exposure,
    catalog: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    *,
    stamp_size: int,
    pixel_scale: float,
    psf_beta: float | None,
    neighbours: bool,
    mask_other_sources: bool = True,
) -> TargetContext:
    """:func:`prepare_targets` of a catalogue already validated, at its pixel positions ``x``, ``y``
    (0-based, shape (n,)), with a checked ``stamp_size`` (pixels) and ``pixel_scale`` (arcsec /
    pixel)."""
    stamps = cut_stamps(exposure.data, x, y, size=stamp_size)
    beta = psf_beta if psf_beta is not None else exposure.psf_beta
    models = np.zeros((len(catalog), stamp_size, stamp_size), dtype=np.float32)
    clipped = np.zeros(len(catalog), dtype=bool)
    on = np.flatnonzero(stamps.on_image)
    if on.size:
        models[on], clipped[on] = render_target_models(
            catalog.iloc[on],
            stamps.dx[on],
            stamps.dy[on],
            psf_fwhm=exposure.psf_fwhm,
            psf_beta=beta,
            size=stamp_size,
            pixel_scale=pixel_scale,
        )
    flags = np.zeros(len(catalog), dtype=np.int64)
    flags[~stamps.on_image] |= Flag.OFF_IMAGE
    flags[stamps.on_image & (stamps.off_chip_fraction > 0)] |= Flag.EDGE
    centre = stamp_size // 2
    flags[stamps.on_image & np.isnan(stamps.data[:, centre, centre])] |= Flag.MASKED
    flags[clipped] |= Flag.BAD_PROFILE
    fit = None
    fitted_sources = None
    if neighbours:
        from lumos_ops.photometry.frame_sources import frame_sources
        from lumos_ops.photometry.neighbours import fit_neighbours

        sources = frame_sources(exposure.data)
        exclude = light = None
        if mask_other_sources:
            from lumos_ops.photometry.frame_sources import other_sources, without_groups
            from lumos_ops.photometry.wing_light import frame_wing_profile, wing_light

            uncatalogued = without_groups(sources, x, y)
            exclude = other_sources(cut_mask(uncatalogued.mask, stamps.x0, stamps.y0, stamp_size),
                                    cut_mask(uncatalogued.detected, stamps.x0, stamps.y0, stamp_size))
            light = wing_light(frame_wing_profile(exposure.data), uncatalogued.detected, stamps.x0, stamps.y0,
                               stamp_size)
        fit = fit_neighbours(exposure.data, stamps, models, source_mask=sources.mask, exclude=exclude,
                             other_light=light)
        stamps = fit.clean(stamps, models)
        flags[fit.blended] |= Flag.BLENDED
        if mask_other_sources and fit.fitted.any():
            fitted_sources = without_groups(sources, x[fit.fitted], y[fit.fitted])
    ctx = TargetContext(
        exposure=exposure,
        catalog=catalog,
        x=x,
        y=y,
        stamps=stamps,
        models=models,
        base_flags=flags,
        neighbours=fit,
        mask_other_sources=mask_other_sources,
        fitted_sources=fitted_sources,
    )
    if not mask_other_sources:
        return ctx
    from lumos_ops.photometry.inputs import wide_stamp_size

    wide = wide_stamp_size(stamp_size)
    off = wide // 2 - stamp_size // 2  # both grids share the centre pixel
    # the other sources' detections in the wide cutouts serve their wing light here and the
    # methods' masks (photometry_inputs) later
    groups = ctx.other_detections(stamps.x0 - off, stamps.y0 - off, wide)
    light = ctx.other_source_light(stamps.x0 - off, stamps.y0 - off, wide, groups=groups)
    centre = light[:, off : off + stamp_size, off : off + stamp_size]
    return dataclasses.replace(ctx, stamps=dataclasses.replace(stamps, data=stamps.data - centre), other_light=light,
                               other_groups=groups)


def available_methods() -> tuple[str, ...]:
    """Names of the registered methods (importable or not)."""
    return tuple(MEASURE_METHODS)


def _method_class(name: str) -> type:
    if name not in MEASURE_METHODS:
        raise LumosValueError(f"unknown photometry method {name!r}; choose one of {', '.join(MEASURE_METHODS)}")
    module_name, _, class_name = MEASURE_METHODS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise LumosValueError(
            f"photometry method {name!r} is not available: cannot import {MEASURE_METHODS[name]} ({exc}); "
            "install or update lumos-ops, or choose another method"
        ) from None


def _accepted_options(cls: type) -> tuple[set[str], bool]:
    params = inspect.signature(cls).parameters.values()
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def get_method(name: str, **options: Any) -> MeasureMethod:
    """Instantiate a registered method with its keyword options.

    Raises
    ------
    LumosValueError
        Unknown name, a method that cannot be imported (e.g. LUMOS not installed yet), or an
        option the method does not accept.
    """
    cls = _method_class(name)
    names, var_kw = _accepted_options(cls)
    unknown = sorted(set(options) - names) if not var_kw else []
    if unknown:
        raise LumosValueError(f"method {name!r} does not accept option(s) {', '.join(unknown)}")
    return cls(**options)


def _route_options(methods: Sequence[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give every method the options its constructor accepts; reject options nobody accepts."""
    routed: dict[str, dict[str, Any]] = {m: {} for m in methods}
    used: set[str] = set()
    for method in methods:
        names, var_kw = _accepted_options(_method_class(method))
        for key, value in options.items():
            if var_kw or key in names:
                routed[method][key] = value
                used.add(key)
    unused = sorted(set(options) - used)
    if unused:
        raise LumosValueError(
            f"option(s) {', '.join(unused)} accepted by none of the methods {', '.join(methods)}"
        )
    return routed


def options_for(methods: Sequence[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` that at least one of ``methods`` accepts (a night measuring its methods in
    several steps gives each step the options of its methods)."""
    accepted = [_accepted_options(_method_class(m)) for m in methods]
    return {k: v for k, v in options.items() if any(var_kw or k in names for names, var_kw in accepted)}


def _check_result(name: str, frame: pd.DataFrame, n: int) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame) or len(frame) != n:
        raise LumosValueError(f"method {name!r} returned {type(frame).__name__} with a wrong number of rows (need {n})")
    missing = [c for c in ("flux", "flux_err", "flag") if c not in frame.columns]
    if missing:
        raise LumosValueError(f"method {name!r} returned no column(s) {', '.join(missing)}")
    return frame.reset_index(drop=True)


def _chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _aperture_corrected(ctx: TargetContext, parts: dict[str, list[pd.DataFrame]], reference: pd.DataFrame, *,
                        apply: bool = True) -> dict[str, list[pd.DataFrame]]:
    """Every method's finished rows on the scale of the targets' large apertures
    (:mod:`lumos_ops.aperture_correction`), with the columns ``aperture_correction`` (the factor),
    ``reference_flux`` / ``reference_flux_err`` (the reference aperture's, e-/s, not divided; NaN for
    targets that cannot calibrate) and ``aperture_calibrator`` (whether the target calibrated the
    factor: the matched filter's for the model-weighted methods, the method's own for the aperture).
    ``reference``: the chunks'
    :func:`~lumos_ops.aperture_correction.chunk_reference`, in the order of ``ctx``'s targets.
    ``apply`` False: the rows uncorrected, with every column of
    :data:`~lumos_ops.aperture_correction.CALIBRATION_COLUMNS`, for
    :func:`~lumos_ops.aperture_correction.correct_pooled`."""
    from lumos_ops.aperture_correction import (
        INTERNAL_COLUMNS,
        apply_aperture_corrections,
        calibration_columns,
        fit_aperture_corrections,
    )

    results = {name: pd.concat(rows, ignore_index=True) for name, rows in parts.items() if rows}
    results = {name: result.assign(**calibration_columns(ctx, reference, result, name=name))
               for name, result in results.items()}
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in parts}
    if not apply:
        out.update({name: [result] for name, result in results.items()})
        return out
    corrections = fit_aperture_corrections(results, label=str(ctx.exposure.path))
    for name, corrected in apply_aperture_corrections(results, corrections).items():
        out[name] = [corrected.drop(columns=list(INTERNAL_COLUMNS))]
    return out


def _method_floor(error_floor: float | Mapping[str, float] | None, method: str, survey, *,
                  neighbour: bool = False) -> float:
    """The flux error floor of ``method`` (``neighbour``: its neighbour error floor): ``error_floor``'s
    (a number for every method, or a mapping's entry), else the survey's (``Survey.error_floor_for``,
    ``Survey.neighbour_error_floor_for``)."""
    own = survey.neighbour_error_floor_for if neighbour else survey.error_floor_for
    if isinstance(error_floor, Mapping):
        return float(error_floor[method]) if method in error_floor else own(method)
    return own(method) if error_floor is None else float(error_floor)


def measure_exposure(
    exposure: Exposure,
    catalog: pd.DataFrame,
    *,
    methods: Sequence[str] = ("aperture",),
    progress: bool = False,
    stamp_size: int = STAMP_SIZE,
    chunk_size: int = _CHUNK,
    calibrate_errors: bool = True,
    calibration_positions: int = 200,
    instances: Mapping[str, MeasureMethod] | None = None,
    neighbours: bool = True,
    error_floor: float | Mapping[str, float] | None = None,
    neighbour_error_floor: float | Mapping[str, float] | None = None,
    remove_gradient: bool = True,
    mask_other_sources: bool = True,
    flux_correction: bool | None = None,
    aperture_correction: bool | Literal["columns"] | None = None,
    **method_options: Any,
) -> pd.DataFrame:
    """Measure every catalogue target on one exposure with one or more methods.

    Parameters
    ----------
    exposure : Exposure
        The CCD image in e-/s per pixel.
    catalog : DataFrame
        External catalogue (validated here), one row per target.
    methods : sequence of str, keyword-only
        Names from :data:`MEASURE_METHODS`.
    progress : bool, keyword-only
        Show a progress bar over targets (stderr).
    stamp_size : int, keyword-only
        Stamp and model side (pixels).
    chunk_size : int, keyword-only
        Targets measured at once.
    calibrate_errors : bool, keyword-only
        Calibrate every method's errors on this exposure's blank sky
        (:mod:`lumos_ops.noise_calibration`): each method also measures up to
        ``calibration_positions`` source-free positions with the targets' shapes, and the
        background part of its error variance is scaled by ``k(A)``, the scatter of those
        zero-flux measurements over their reported errors at the target's size (LUMOS: the
        likelihood is widened about its median). For LUMOS, model galaxies injected at the same
        positions also check its width with a source present and widen it further where that
        check says so (``NoiseCalibration.source``). Adds the columns ``error_scale`` (``k``),
        ``flux_err_raw`` (the uncalibrated error) and for LUMOS ``source_scale``. Frames with fewer
        than 30 usable positions keep ``k = 1`` (with a warning). A LUMOS model that records a
        shared error (:mod:`lumos_ops.lumos.shared_error`) adds ``shared_rho`` per row, which the
        co-adds use, and with a residual axis ``model_residual`` (of the optimal fit, shared with the
        ``optimal`` method), ``shared_rho_bins`` and ``shared_residual_cuts``.
    calibration_positions : int, keyword-only
        Blank-sky positions wanted per exposure (fewer on small or crowded frames).
    instances : mapping of str to MeasureMethod, keyword-only
        Methods already constructed, used instead of building them from ``method_options`` (a
        worker process keeps its LUMOS model loaded across exposures:
        ``lumos_ops.pipeline.worker_cache``).
    neighbours : bool, keyword-only
        Fit blended targets jointly and measure each one on stamps without its neighbours' fitted
        light (:mod:`lumos_ops.photometry.neighbours`); every other target is measured on the
        image's own pixels. The background part of every method's error variance is multiplied by
        the fit's ``variance_factor`` (column ``neighbour_variance``, 1 where not blended), and
        targets it affects by more than 10 % are flagged BLENDED.
    error_floor : float, mapping of str to float, or None, keyword-only
        Fraction added in quadrature to every method's calibrated error, for the error of the PSF
        and catalogue models (:mod:`lumos_ops.photometry.error_floor`): of the target's flux and
        of the light of the catalogued neighbours the joint fit took out of its stamps (column
        ``neighbour_light``, e-/s); a mapping gives it per method (methods not in it take the
        survey's). None: the survey's (the exposure's survey, else the current one:
        ``Survey.error_floor_for``, its ``method_error_floors`` else its ``flux_error_floor``).
        Adds ``flux_err_stat`` (the error before it),
        ``error_floor`` and ``floor_rho`` (the correlation it gives two exposures of the source,
        which the co-adds use).
    neighbour_error_floor : float, mapping of str to float, or None, keyword-only
        Fraction of ``neighbour_light`` added in quadrature; a mapping gives it per method (methods
        not in it take the survey's). None: the survey's (``Survey.neighbour_error_floor_for``, its
        ``method_neighbour_error_floors`` else its ``neighbour_error_floor``).
    remove_gradient : bool, keyword-only
        Take out the frame's large-scale sky gradient, fitted as a plane, where it changes the sky
        by at least half the pixel noise across a 94 px cutout and stands 5 sigma out of the
        scatter of the block medians (:mod:`lumos_ops.photometry.sky_plane`); a flat frame is
        measured as it is.
    mask_other_sources : bool, keyword-only
        Leave the pixels of other sources detected on the frame (not the target's own detection)
        out of the optimal sum's, the profile fit's and LUMOS's footprint, as the annulus
        background leaves them out (docs/background.md, "Other sources under a large footprint"),
        and subtract their light beyond the detections, the frame's own profile of it by distance,
        from every cutout (:mod:`lumos_ops.photometry.wing_light`; "Light beyond the detections");
        the blank-sky calibration does the same.
    flux_correction : bool or None, keyword-only
        Divide every method's fluxes (LUMOS: its whole likelihood) by the flux error of the
        exposure's PSF model, measured on galaxies drawn with the exposure's own stars' PSF and
        injected into its blank sky (:mod:`lumos_ops.flux_correction`); column ``flux_correction``
        (the factor, 1 where it is not significant or the exposure has too few stars). None: the
        survey's ``psf_flux_correction``.
    aperture_correction : bool, "columns" or None, keyword-only
        Put every method's finished fluxes (LUMOS: its whole likelihood) on the scale of the targets'
        own large apertures, measured on the exposure's bright isolated targets
        (:mod:`lumos_ops.aperture_correction`); column ``aperture_correction``. Not with the star-PSF
        ``flux_correction``, which takes precedence where the exposure has the stars for it. None: the
        survey's ``aperture_correction``.
        ``"columns"``: the rows uncorrected, with what the correction is fitted from
        (:data:`~lumos_ops.aperture_correction.CALIBRATION_COLUMNS`), to correct several exposures that
        share one PSF as one (:func:`~lumos_ops.aperture_correction.correct_pooled`).
    **method_options
        Passed to the constructor of every method that accepts them (e.g. ``model=`` for LUMOS);
        an option no method accepts is an error.

    Returns
    -------
    DataFrame
        Long format, ``len(methods) * n`` rows grouped by method in catalogue order, columns
        :data:`LONG_COLUMNS` then method-specific ones (NaN where a method lacks them). Targets off
        the image are kept with flag OFF_IMAGE and NaN flux; only the targets on the image are
        prepared and measured, so a field-wide catalogue costs little per CCD.
    """
    methods = list(dict.fromkeys(methods))
    if aperture_correction not in (None, True, False, "columns"):
        raise LumosValueError(f"aperture_correction={aperture_correction!r}: give True, False, 'columns' or None "
                              "(the survey's setting)")
    if not methods:
        raise LumosValueError("methods must name at least one photometry method")
    if chunk_size < 1:
        raise LumosValueError(f"chunk_size must be >= 1, got {chunk_size}")
    given = dict(instances or {})
    built = [m for m in methods if m not in given]
    routed = _route_options(built, method_options) if built else {}
    if not built and method_options:
        raise LumosValueError(f"option(s) {', '.join(sorted(method_options))} given with pre-built methods only")
    instances = {m: given[m] if m in given else get_method(m, **routed[m]) for m in methods}
    from lumos_ops.photometry.error_floor import apply_error_floor
    from lumos_ops.survey import current_survey

    survey = exposure.survey or current_survey()
    floors = {m: _method_floor(error_floor, m, survey) for m in methods}
    neighbour_floors = {m: _method_floor(neighbour_error_floor, m, survey, neighbour=True) for m in methods}
    if "lumos" in instances:
        # LUMOS runs on torch: loaded before the models are rendered, they render with it too
        # (render_target_models), about twice as fast as with numpy on the CPU
        import torch  # noqa: F401
    catalog = validate_catalog(catalog, source=exposure.path)
    if remove_gradient:
        from lumos_ops.photometry.sky_plane import remove_sky_plane

        flat = remove_sky_plane(exposure.data, source=exposure.path)
        if flat is not exposure.data:
            exposure = dataclasses.replace(exposure, data=flat)
    x, y = target_pixels(catalog, exposure.wcs, source=exposure.path)
    # Only targets whose centre is on the image are prepared and measured (a field catalogue may
    # hold many more targets than one CCD sees); the others get OFF_IMAGE rows.
    on = np.flatnonzero(centres_on_image(x, y, exposure.shape))
    # the catalogue is validated and located once, here, not again by prepare_targets
    ctx = _prepare_located(exposure, catalog.iloc[on].reset_index(drop=True), x[on], y[on], stamp_size=stamp_size,
                           pixel_scale=_checked_scales(exposure, stamp_size, None), psf_beta=None,
                           neighbours=neighbours, mask_other_sources=mask_other_sources)
    calibrations = None
    if calibrate_errors and ctx.n:
        from lumos_ops.noise_calibration import calibrate_noise

        calibrations = calibrate_noise(exposure, catalog, x, y, instances, n_positions=calibration_positions,
                                       stamp_size=stamp_size, chunk_size=chunk_size,
                                       mask_other_sources=mask_other_sources)
    corrections = None
    if (survey.psf_flux_correction if flux_correction is None else flux_correction) and ctx.n:
        from lumos_ops.flux_correction import measure_flux_corrections

        corrections = measure_flux_corrections(exposure, catalog, x, y, instances, stamp_size=stamp_size,
                                               chunk_size=chunk_size, mask_other_sources=mask_other_sources)
        if not any(c.star_psf for c in corrections.values()):  # too few stars: the targets' own scale instead
            log.info("%s: no star-PSF flux correction; the aperture correction from the targets applies", exposure.path)
            corrections = None
    parts: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    aperture_corrected = corrections is None and ctx.n and (
        survey.aperture_correction if aperture_correction is None else aperture_correction)
    references: list[pd.DataFrame] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(catalog), unit="target", desc=f"measure {exposure.band}")
        bar.update(len(catalog) - ctx.n)
    try:
        for chunk in _chunks(ctx.n, chunk_size):
            sub = ctx.take(chunk)
            if aperture_corrected:
                from lumos_ops.aperture_correction import chunk_reference

                references.append(chunk_reference(sub))
            for name, method in instances.items():
                result = _check_result(name, method.measure(sub), sub.n)
                if corrections is not None:
                    from lumos_ops.flux_correction import apply_flux_correction
                    from lumos_ops.noise_calibration import context_model_area

                    result = apply_flux_correction(result, corrections[name], area=context_model_area(sub))
                factor = None
                if sub.neighbours is not None:
                    factor = sub.variance_factor
                    result = result.assign(neighbour_variance=factor)
                if calibrations is not None or (factor is not None and np.any(factor != 1.0)):
                    from lumos_ops.noise_calibration import apply_error_scale

                    calibration = 1.0 if calibrations is None else calibrations[name]
                    result = apply_error_scale(result, name, calibration, sub, variance_factor=factor)
                light = None
                if sub.neighbours is not None:
                    light = sub.neighbour_light
                    result = result.assign(neighbour_light=light, neighbour_overlap=sub.neighbour_overlap)
                result = apply_error_floor(result, floors[name], neighbour_light=light,
                                           neighbour_floor=neighbour_floors[name])
                shared = getattr(method, "shared_error", None)
                if shared is not None:
                    from lumos_ops.lumos.shared_error import with_shared_rho

                    if shared.residual_cuts:
                        from lumos_ops.photometry.optimal import cached_optimal

                        result = result.assign(model_residual=cached_optimal(sub)["model_residual"].to_numpy())
                    result = with_shared_rho(result, shared)
                parts[name].append(result)
            if bar is not None:
                bar.update(sub.n)
    finally:
        if bar is not None:
            bar.close()
    if aperture_corrected:
        parts = _aperture_corrected(ctx, parts, pd.concat(references, ignore_index=True),
                                    apply=aperture_corrected != "columns")
    frames = []
    for name in methods:
        result = pd.concat(parts[name], ignore_index=True) if parts[name] else pd.DataFrame(columns=["flux", "flux_err", "flag"])
        result.index = on
        result = result.reindex(np.arange(len(catalog)))
        flag = np.full(len(catalog), int(Flag.OFF_IMAGE), dtype=np.int64)
        flag[on] = result["flag"].to_numpy()[on].astype(np.int64) | ctx.base_flags
        off = (flag & Flag.OFF_IMAGE) != 0
        head = pd.DataFrame(
            {
                "ref_id": catalog["ref_id"].to_numpy(np.int64),
                "method": name,
                "x": x,
                "y": y,
                "band": exposure.band,
                "flux": np.where(off, np.nan, result["flux"].to_numpy(np.float64)),
                "flux_err": np.where(off, np.nan, result["flux_err"].to_numpy(np.float64)),
                "flag": flag,
            }
        )
        extra = result.drop(columns=[c for c in result.columns if c in LONG_COLUMNS])
        frames.append(pd.concat([head, extra.reset_index(drop=True)], axis=1))
    return pd.concat(frames, ignore_index=True)
