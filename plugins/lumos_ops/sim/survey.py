"""Simulate a PAUCam-like survey: FITS exposures in ADU, the external catalogue and the truth.

Layout written under ``out_dir`` (``docs/ARCHITECTURE.md``)::

    catalog.parquet      ref_id, ra, dec, r50, sersic_n, q, pa, i_auto, zspec, sed_type, ebv, flux_nJy_<band>...
    truth.parquet        ref_id, night, expnum, ccd, band, epoch, x, y, flux_true (e-/s)
    exposures/{night}/exp{expnum:07d}_ccd{ccd:02d}.fits
    manifest.json        config, seed, counts, code version, one entry per CCD image
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops import __version__
from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.sim.detector import (
    add_cosmic_rays,
    add_crosstalk,
    bad_columns,
    bleed_saturated,
    paste_stamps,
    read_noise,
    scattered_light,
)
from lumos_ops.sim.observing import CcdExposure, ccd_wcs, make_camera, plan_exposures
from lumos_ops.sim.sky import Sky, make_sky
from lumos_ops.sim.survey_config import SurveyConfig
from lumos_ops.sim.threads import torch_threads

__all__ = ["SurveyManifest", "simulate_survey", "simulate_ccd", "TRUTH_COLUMNS"]

TRUTH_COLUMNS: tuple[str, ...] = ("ref_id", "night", "expnum", "ccd", "band", "epoch", "x", "y", "flux_true")
"""Columns of ``truth.parquet``."""

_HOT_COLUMN_RATE = 1.5
_CROSSTALK = 6e-4
_FAINT_STAMP = 32
_STAR_STAMP = 48
_BRIGHT_STAR_STAMP = 160


@dataclasses.dataclass(frozen=True)
class SurveyManifest:
    """What :func:`simulate_survey` wrote.

    Attributes
    ----------
    out_dir : pathlib.Path
    catalog_path, truth_path, manifest_path : pathlib.Path
    exposure_paths : list of pathlib.Path
        One FITS file per CCD image, in exposure order.
    n_galaxies : int
        Catalogue rows.
    n_exposures : int
        Distinct exposure numbers.
    n_truth_rows : int
        Source x CCD-image observations in ``truth.parquet``.
    elapsed_s : float
        Wall-clock time of the simulation (0 when loaded from disk).
    """

    out_dir: Path
    catalog_path: Path
    truth_path: Path
    manifest_path: Path
    exposure_paths: list[Path]
    n_galaxies: int
    n_exposures: int
    n_truth_rows: int
    elapsed_s: float = 0.0

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> SurveyManifest:
        """Read ``out_dir/manifest.json`` written by :func:`simulate_survey`."""
        out = Path(out_dir)
        path = out / "manifest.json"
        if not path.is_file():
            raise InputFileError(f"{path}: no survey manifest; run `lumos simulate survey --out {out}` first")
        data = json.loads(path.read_text())
        return cls(
            out_dir=out,
            catalog_path=out / "catalog.parquet",
            truth_path=out / "truth.parquet",
            manifest_path=path,
            exposure_paths=[out / e["path"] for e in data["exposures"]],
            n_galaxies=int(data["counts"]["n_galaxies"]),
            n_exposures=int(data["counts"]["n_exposures"]),
            n_truth_rows=int(data["counts"]["n_truth_rows"]),
        )


def _pixels(wcs: Any, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if len(table) == 0:
        return np.zeros(0), np.zeros(0)
    x, y = wcs.world_to_pixel_values(table["ra"].to_numpy(float), table["dec"].to_numpy(float))
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _near(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    ny, nx = shape
    return (x > -margin) & (x < nx - 1 + margin) & (y > -margin) & (y < ny - 1 + margin)


def _shape_column(table: pd.DataFrame, name: str) -> str:
    """The rendered (true) shape column: ``<name>_true`` when the catalogue values carry errors."""
    return f"{name}_true" if f"{name}_true" in table.columns else name


def _render_galaxies(image: np.ndarray, table: pd.DataFrame, x: np.ndarray, y: np.ndarray, counts: np.ndarray,
                     item: CcdExposure, *, size: int, pixel_scale: float) -> None:
    from lumos_ops.render import render_galaxies

    if len(table) == 0:
        return
    ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
    result = render_galaxies(
        r50=table[_shape_column(table, "r50")].to_numpy(float),
        sersic_n=table[_shape_column(table, "sersic_n")].to_numpy(float),
        q=table[_shape_column(table, "q")].to_numpy(float),
        pa=table[_shape_column(table, "pa")].to_numpy(float),
        psf_fwhm=item.psf_fwhm,
        psf_beta=item.psf_beta,
        dx=x - ix,
        dy=y - iy,
        flux=counts,
        size=size,
        pixel_scale=pixel_scale,
    )
    paste_stamps(image, np.asarray(result.images, dtype=np.float64), x, y)


def _render_stars(image: np.ndarray, x: np.ndarray, y: np.ndarray, counts: np.ndarray, item: CcdExposure,
                  *, full_well: float, pixel_scale: float) -> None:
    from lumos_ops.render import render_point_sources

    bright = counts > 0.5 * full_well
    for mask, size in ((~bright, _STAR_STAMP), (bright, _BRIGHT_STAR_STAMP)):
        if not mask.any():
            continue
        xs, ys = x[mask], y[mask]
        result = render_point_sources(
            psf_fwhm=item.psf_fwhm,
            psf_beta=item.psf_beta,
            dx=xs - np.floor(xs + 0.5),
            dy=ys - np.floor(ys + 0.5),
            flux=counts[mask],
            size=size,
            pixel_scale=pixel_scale,
        )
        paste_stamps(image, np.asarray(result.images, dtype=np.float64), xs, ys)


def _header(item: CcdExposure, wcs: Any, config: SurveyConfig) -> Any:
    from astropy.io import fits

    header = fits.Header()
    cards: list[tuple[str, Any, str]] = [
        ("OBJECT", "COSMOS-SIM", "simulated PAUCam-like field"),
        ("ORIGIN", "lumos-ops", f"lumos simulate survey {__version__}"),
        ("BUNIT", "ADU", "pixel unit"),
        ("FILTER", item.band, "narrow band"),
        ("EXPTIME", item.exptime, "[s] exposure time"),
        ("GAIN", item.gain, "[e-/ADU]"),
        ("RDNOISE", item.read_noise, "[e-] read noise"),
        ("SATURATE", item.saturate_adu, "[ADU] saturation level"),
        ("PSFFWHM", item.psf_fwhm, "[arcsec] Moffat PSF FWHM"),
        ("PSFBETA", item.psf_beta, "Moffat beta"),
        ("ZP", item.zero_point, "[mag] AB zero point for e-/s"),
        ("EPOCH", item.epoch, "camera epoch (0 before, 1 after baffles)"),
        ("EXPNUM", item.expnum, "exposure number"),
        ("CCDNUM", item.ccd, "CCD number (1-8)"),
        ("TRAY", item.tray, "filter tray (0 bluest)"),
        ("NIGHT", item.night, "observing night (evening date)"),
        ("MJD-OBS", item.mjd, "[d] exposure start"),
        ("PIXSCALE", config.pixel_scale, "[arcsec/pixel]"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    header.extend(wcs.to_header(), update=True)
    return header


def simulate_ccd(
    config: SurveyConfig, sky: Sky, item: CcdExposure
) -> tuple[np.ndarray, Any, pd.DataFrame]:
    """Simulate one CCD image.

    Parameters
    ----------
    config : SurveyConfig
    sky : Sky
    item : CcdExposure

    Returns
    -------
    adu : ndarray, shape ccd_shape, float32
        The image in ADU (bad columns NaN, saturated pixels at ``SATURATE``).
    header : astropy.io.fits.Header
    truth : pandas.DataFrame
        :data:`TRUTH_COLUMNS` for every catalogue galaxy whose centre falls on the CCD.
    """
    shape = config.ccd_shape
    art = config.artefacts
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 3, item.expnum, item.ccd]))
    wcs = ccd_wcs(item, ccd_shape=shape, pixel_scale=config.pixel_scale)
    to_e_per_s = 10.0 ** (0.4 * (item.zero_point - NJY_ZEROPOINT))
    column = f"flux_nJy_{item.band}"
    full_well = item.saturate_adu * item.gain
    image = np.zeros(shape, dtype=np.float64)
    if art.sky:
        sky_level = item.sky_rate * item.exptime
        if art.scattered_light:
            pattern = scattered_light(shape, band=item.band, epoch=item.epoch, ccd=item.ccd, seed=config.seed,
                                      exposure_rng=rng)
            image += sky_level * (1.0 + pattern)
        else:
            image += sky_level

    margin = config.stamp_size / 2
    x, y = _pixels(wcs, sky.catalog)
    near = _near(x, y, shape, margin)
    flux = sky.catalog[column].to_numpy(float) * to_e_per_s
    _render_galaxies(image, sky.catalog[near], x[near], y[near], flux[near] * item.exptime, item,
                     size=config.stamp_size, pixel_scale=config.pixel_scale)
    ny, nx = shape
    on = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    truth = pd.DataFrame(
        {
            "ref_id": sky.catalog["ref_id"].to_numpy(np.int64)[on],
            "night": item.night,
            "expnum": np.int64(item.expnum),
            "ccd": np.int64(item.ccd),
            "band": item.band,
            "epoch": np.int64(item.epoch),
            "x": x[on],
            "y": y[on],
            "flux_true": flux[on],
        },
        columns=list(TRUTH_COLUMNS),
    )
    if len(sky.faint):
        fx, fy = _pixels(wcs, sky.faint)
        near = _near(fx, fy, shape, _FAINT_STAMP / 2)
        counts = sky.faint[column].to_numpy(float)[near] * to_e_per_s * item.exptime
        _render_galaxies(image, sky.faint[near], fx[near], fy[near], counts, item,
                         size=_FAINT_STAMP, pixel_scale=config.pixel_scale)
    if len(sky.stars):
        sx, sy = _pixels(wcs, sky.stars)
        near = _near(sx, sy, shape, _BRIGHT_STAR_STAMP / 2)
        counts = sky.stars[column].to_numpy(float)[near] * to_e_per_s * item.exptime
        _render_stars(image, sx[near], sy[near], counts, item, full_well=full_well, pixel_scale=config.pixel_scale)

    if art.shot_noise:
        image = rng.poisson(np.clip(image, 0.0, None)).astype(np.float64)
    if art.cosmic_rays:
        add_cosmic_rays(rng, image, exptime=item.exptime)
    masked: list[tuple[int, int, int]] = []
    if art.bad_columns:
        masked, hot = bad_columns(shape, ccd=item.ccd, seed=config.seed)
        for col in hot:
            image[:, col] += _HOT_COLUMN_RATE * item.exptime
    saturated = bleed_saturated(image, full_well=full_well)
    if art.crosstalk:
        add_crosstalk(image, coefficient=_CROSSTALK, threshold=0.2 * full_well)
    if art.read_noise or art.banding:
        image += read_noise(rng, shape, sigma=item.read_noise, white=art.read_noise, banding=art.banding)
    adu = (image / item.gain).astype(np.float32)
    np.minimum(adu, np.float32(item.saturate_adu), out=adu)
    adu[saturated] = np.float32(item.saturate_adu)
    for col, start, end in masked:
        adu[start:end, col] = np.nan
    return adu, _header(item, wcs, config), truth


def simulate_survey(
    config: SurveyConfig, out_dir: str | os.PathLike[str], *, progress: bool = False, workers: int = 1
) -> SurveyManifest:
    """Simulate the survey described by ``config`` and write it under ``out_dir``.

    Parameters
    ----------
    config : SurveyConfig
    out_dir : path-like
        Created if missing; existing files of the same names are overwritten and exposures of
        an earlier run that this plan does not write are deleted, so the directory always
        holds exactly one survey.
    progress : bool, keyword-only
        Show a tqdm progress bar over CCD images.
    workers : int, keyword-only
        Processes that simulate CCD images in parallel (forked; each renders with
        ``config.threads`` torch threads). Every CCD image draws from its own seed, so the files are
        byte-identical for any number of workers.

    Returns
    -------
    SurveyManifest
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LumosValueError(f"simulate_survey: workers must be an integer >= 1, got {workers!r}")
    with torch_threads(config.threads):
        return _simulate(config, out_dir, progress=progress, workers=workers)


_WORKER_STATE: dict[str, Any] = {}
"""What a forked simulation worker reads: the configuration, the sky and the output directory."""


def _write_ccd(item: CcdExposure) -> tuple[Path, pd.DataFrame]:
    """Simulate CCD image ``item`` and write it under the output directory; returns its path and truth."""
    config, sky, out = _WORKER_STATE["config"], _WORKER_STATE["sky"], _WORKER_STATE["out"]
    from astropy.io import fits

    with torch_threads(config.threads):
        adu, header, truth = simulate_ccd(config, sky, item)
    path = out / item.relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=adu, header=header).writeto(path, overwrite=True)
    return path, truth


def _simulate_all(plan: list[CcdExposure], workers: int, progress: bool) -> list[tuple[Path, pd.DataFrame]]:
    """:func:`_write_ccd` over ``plan`` in plan order, in ``workers`` forked processes when > 1."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(plan), desc="simulate survey", unit="ccd", disable=not progress)
    results: list[tuple[Path, pd.DataFrame]] = []
    with bar:
        if workers == 1 or len(plan) < 2:
            for item in plan:
                results.append(_write_ccd(item))
                bar.update()
            return results
        from lumos_ops.sim.worker_pool import forked_pool

        with forked_pool(min(workers, len(plan))) as pool:
            for result in pool.imap(_write_ccd, plan):
                results.append(result)
                bar.update()
    return results


def _simulate(config: SurveyConfig, out_dir: str | os.PathLike[str], *, progress: bool, workers: int) -> SurveyManifest:
    start = time.perf_counter()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create the output directory ({exc})") from None
    sky = make_sky(config)
    camera = make_camera(config.seed)
    plan = plan_exposures(config, camera)
    truths: list[pd.DataFrame] = []
    entries: list[dict[str, Any]] = []
    paths: list[Path] = []
    _WORKER_STATE.update(config=config, sky=sky, out=out)
    try:
        written_ccds = _simulate_all(list(plan), workers, progress)
    finally:
        _WORKER_STATE.clear()
    for item, (path, truth) in zip(plan, written_ccds, strict=True):
        truths.append(truth)
        paths.append(path)
        entries.append(
            {
                "path": item.relative_path,
                "night": item.night,
                "expnum": item.expnum,
                "ccd": item.ccd,
                "band": item.band,
                "epoch": item.epoch,
                "exptime": item.exptime,
                "psf_fwhm": item.psf_fwhm,
                "psf_beta": item.psf_beta,
                "zero_point": item.zero_point,
                "n_targets": len(truth),
            }
        )
    written = set(paths)
    for stale in sorted(out.glob("exposures/*/exp*_ccd*.fits")):
        if stale not in written:
            stale.unlink()
    truth_table = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame(columns=list(TRUTH_COLUMNS))
    catalog_path = out / "catalog.parquet"
    truth_path = out / "truth.parquet"
    sky.catalog.to_parquet(catalog_path, index=False)
    truth_table.to_parquet(truth_path, index=False)
    counts = {
        "n_galaxies": len(sky.catalog),
        "n_faint_galaxies": len(sky.faint),
        "n_stars": len(sky.stars),
        "n_exposures": len({e["expnum"] for e in entries}),
        "n_ccd_images": len(entries),
        "n_truth_rows": len(truth_table),
        "n_nights": len({e["night"] for e in entries}),
    }
    manifest = {
        "format": "lumos-survey-sim",
        "version": 1,
        "code_version": __version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "counts": counts,
        "exposures": entries,
    }
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return SurveyManifest(
        out_dir=out,
        catalog_path=catalog_path,
        truth_path=truth_path,
        manifest_path=manifest_path,
        exposure_paths=paths,
        n_galaxies=counts["n_galaxies"],
        n_exposures=counts["n_exposures"],
        n_truth_rows=counts["n_truth_rows"],
        elapsed_s=time.perf_counter() - start,
    )
