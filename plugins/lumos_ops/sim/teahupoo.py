"""TEAHUPOO training-set generator (paper §2.2): simulated galaxies on real background cutouts.

For every stamp: pick an exposure (any FITS following the header contract) and a random
position on it, cut the background there, draw (r50, n, q, i_auto) jointly from a catalogue row,
take the band flux of that galaxy or, with ``FluxSource.BAND_DISTRIBUTION`` (the paper's recipe),
an independent draw from the catalogue's flux distribution in that band (clipped to
``flux_range`` e-/s), render the Sersic profile
convolved with the exposure's Moffat PSF with a sub-pixel shift, add Poisson noise to the galaxy
counts only (the background already carries every other noise) and store the noisy cutout with
the unit-flux noiseless model. Output layout: ``docs/ARCHITECTURE.md`` (``lumos-teahupoo`` v1).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.constants import NB_BANDS, NJY_ZEROPOINT
from lumos_ops.cutouts import cut_stamps
from lumos_ops.exceptions import CatalogError, InputFileError, LumosValueError
from lumos_ops.io.atomic import write_text_atomic
from lumos_ops.io.catalog import validate_catalog
from lumos_ops.io.exposure import Exposure, image_shape, read_exposure
from lumos_ops.io.training_set import FORMAT_NAME, FORMAT_VERSION
from lumos_ops.sim.bands import band_zero_point
from lumos_ops.sim.detector import paste_stamps
from lumos_ops.sim.noise_texture import kernel_padding, retexture, texture_kernel_1d
from lumos_ops.sim.population import SERSIC_RANGE, draw_galaxies, njy_columns
from lumos_ops.sim.seds import mag_to_njy
from lumos_ops.sim.star_truth import draw_with_star_psf, exposure_star_psf
from lumos_ops.sim.teahupoo_config import SPLITS, FluxSource, TeahupooConfig
from lumos_ops.sim.threads import torch_threads
from lumos_ops.sim.truth_mismatch import MISMATCH_META_COLUMNS, MismatchDraws, draw_mismatch, render_truth
from lumos_ops.survey import current_survey

__all__ = ["TrainingSetManifest", "generate_training_set", "META_COLUMNS", "NOISE_META_COLUMNS",
           "MISMATCH_META_COLUMNS", "FORMAT_NAME", "FORMAT_VERSION"]

META_COLUMNS: tuple[str, ...] = (
    "stamp_id", "shard", "row", "band", "epoch", "band_epoch", "ccd", "ccd_x", "ccd_y", "i_auto", "r50",
    "sersic_n", "q", "pa", "dx", "dy", "flux", "exptime", "psf_fwhm", "psf_beta", "source_exposure", "split",
    "ref_id", "zero_point", "flux_outside", "n_masked", "nbr_ref_id", "nbr_i_auto", "nbr_flux", "nbr_dx", "nbr_dy", "flux_ref_id",
    "background_scale",
)
"""Columns of ``meta.parquet``: the ARCHITECTURE ones, then ``ref_id`` (catalogue row used; the
row of the shape population when ``shape_population > 0``),
``zero_point`` (of the source exposure, NaN if none), ``flux_outside`` (fraction of the model
outside the stamp), ``n_masked`` (NaN background pixels in the stamp) and the added neighbour:
``nbr_ref_id`` (-1 when none), ``nbr_i_auto``, ``nbr_flux`` (e-/s, 0 when none), ``nbr_dx``,
``nbr_dy`` (its offset from the target, pixels; NaN when none), ``flux_ref_id`` (the catalogue row
whose band flux was used: ``ref_id`` itself except with ``FluxSource.BAND_DISTRIBUTION``; the row
of the flux population when ``flux_population > 0``) and ``background_scale`` (the factor applied to
the background cutout, ``TeahupooConfig.background_scale_range``)."""

NOISE_META_COLUMNS: tuple[str, ...] = (
    "noise_textured", "noise_kernel_sigma", "noise_resample", "noise_shift_x", "noise_shift_y",
)
"""Columns that follow :data:`META_COLUMNS` when ``TeahupooConfig.noise_texture_fraction > 0``:
whether the stamp's background was re-textured (:mod:`lumos_ops.sim.noise_texture`), the Gaussian
sigma of its kernel (pixels), its resampling kernel and that kernel's sub-pixel shifts (pixels);
0, ``"none"``, 0, 0 on the stamps left as they were. With a truth-model mismatch
(``TeahupooConfig.truth_mismatch``) :data:`MISMATCH_META_COLUMNS` follow, and ``psf_fwhm`` is the
model's PSF FWHM (arcsec, ``psf_scale`` included). With ``TeahupooConfig.sky_removed_range`` the next
column is ``sky_removed``, the level (e-/s per pixel) subtracted from the stamp's background; with
``TeahupooConfig.truth_psf = "stars"`` the last is ``star_psf``, whether the stamp's galaxies were
drawn with its exposure's ePSF (False where the exposure had too few stars for one)."""


@dataclasses.dataclass(frozen=True)
class TrainingSetManifest:
    """What :func:`generate_training_set` wrote.

    Attributes
    ----------
    out_dir, manifest_path, meta_path : pathlib.Path
    shard_paths : list of pathlib.Path
    n_stamps, stamp_size : int
    elapsed_s : float
        Wall-clock time (s).
    stamps_per_s : float
        Throughput, ``n_stamps / elapsed_s``.
    """

    out_dir: Path
    manifest_path: Path
    meta_path: Path
    shard_paths: list[Path]
    n_stamps: int
    stamp_size: int
    elapsed_s: float
    stamps_per_s: float


def _band_njy(catalog: pd.DataFrame, band: str, rows: np.ndarray, source: FluxSource) -> np.ndarray:
    column = f"flux_nJy_{band}"
    explicit = source in (FluxSource.CATALOG, FluxSource.BAND_DISTRIBUTION)
    if explicit or (source is FluxSource.AUTO and column in catalog.columns):
        if column not in catalog.columns:
            raise CatalogError(
                f"the catalogue has no {column} column; use flux_source='flat_spectrum' or add the band fluxes (nJy)"
            )
        return catalog[column].to_numpy(np.float64)[rows]
    return mag_to_njy(catalog["i_auto"].to_numpy(np.float64)[rows])


def _stamp_fluxes(exposure: Exposure, njy: np.ndarray, flux_range: tuple[float, float]) -> tuple[np.ndarray, float]:
    zero_point = exposure.zero_point if exposure.zero_point is not None else band_zero_point(exposure.band)
    flux = np.nan_to_num(njy, nan=0.0) * 10.0 ** (0.4 * (zero_point - NJY_ZEROPOINT))
    return np.clip(flux, *flux_range), float(exposure.zero_point) if exposure.zero_point is not None else float("nan")


def _neighbours(
    sel: np.ndarray,
    meta: dict[str, np.ndarray],
    nbr_rows: np.ndarray,
    nbr_pa: np.ndarray,
    catalog: pd.DataFrame,
    exposure: Exposure,
    beta: float,
    config: TeahupooConfig,
    psf_fwhm: float | np.ndarray,
    star: Any = None,
) -> np.ndarray:
    """Noiseless neighbour galaxies (e-/s per pixel), shape (len(sel), S, S); zeros where none. ``psf_fwhm``
    (arcsec): the exposure's, or one per stamp of ``sel``; ``star``: the exposure's ePSF (GalSim), which
    draws them instead."""
    from lumos_ops.render import render_galaxies

    size = config.stamp_size
    canvas = np.zeros((len(sel), size, size))
    which = np.flatnonzero(meta["nbr_ref_id"][sel] >= 0)
    if len(which) == 0:
        return canvas
    ids = sel[which]
    rows = nbr_rows[ids]
    tx = size // 2 + meta["dx"][ids] + meta["nbr_dx"][ids]
    ty = size // 2 + meta["dy"][ids] + meta["nbr_dy"][ids]
    shape = {"r50": catalog["r50"].to_numpy(np.float64)[rows],
             "sersic_n": np.clip(catalog["sersic_n"].to_numpy(np.float64)[rows], *SERSIC_RANGE),
             "q": np.clip(catalog["q"].to_numpy(np.float64)[rows], 0.05, 1.0), "pa": nbr_pa[ids],
             "dx": tx - np.floor(tx + 0.5), "dy": ty - np.floor(ty + 0.5)}
    if star is not None:
        images = draw_with_star_psf(star, **shape, flux=meta["nbr_flux"][ids], size=size, pixel_scale=config.pixel_scale)
    else:
        images = np.asarray(render_galaxies(
            **shape, psf_fwhm=psf_fwhm if np.ndim(psf_fwhm) == 0 else np.asarray(psf_fwhm)[which], psf_beta=beta,
            flux=meta["nbr_flux"][ids], size=size, pixel_scale=config.pixel_scale, device=config.device,
        ).images, dtype=np.float64)
    for k, j in enumerate(which):
        paste_stamps(canvas[j], images[k : k + 1], tx[k : k + 1], ty[k : k + 1])
    return canvas


def _open_shards(out: Path, config: TeahupooConfig) -> list[np.ndarray]:
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(shard_dir.glob("shard-*.npy")):
        stale.unlink()
    shards = []
    for index, start in enumerate(range(0, config.n_stamps, config.shard_size)):
        n = min(config.shard_size, config.n_stamps - start)
        shards.append(
            np.lib.format.open_memmap(
                shard_dir / f"shard-{index:05d}.npy",
                mode="w+",
                dtype=np.float32,
                shape=(n, 2, config.stamp_size, config.stamp_size),
            )
        )
    return shards


def generate_training_set(
    config: TeahupooConfig,
    exposure_paths: Sequence[str | os.PathLike[str]],
    catalog: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    neighbour_catalog: pd.DataFrame | None = None,
    progress: bool = False,
    workers: int = 1,
) -> TrainingSetManifest:
    """Generate TEAHUPOO stamps.

    Parameters
    ----------
    config : TeahupooConfig
    exposure_paths : sequence of path-like
        FITS exposures following the header contract (read with
        :func:`lumos_ops.io.exposure.read_exposure`); their order matters for reproducibility.
    catalog : pandas.DataFrame
        Catalogue rows to sample shapes and magnitudes from (validated with
        :func:`lumos_ops.io.catalog.validate_catalog`); optional ``flux_nJy_<band>`` columns.
    out_dir : path-like
        Output directory (created; files of the same names are overwritten).
    neighbour_catalog : pandas.DataFrame or None, keyword-only
        Catalogue the added neighbours (``config.neighbour_fraction``) are drawn from, with their
        own band flux (``flux_nJy_<band>``, or a flat spectrum at their ``i_auto``); None = ``catalog``.
        E.g. the paper's Fig. 8 test: targets at i = 22 with neighbours at i = 20.
    progress : bool, keyword-only
        tqdm progress bar over stamps.
    workers : int, keyword-only
        Processes that cut and render the stamps of different exposures in parallel (forked; each
        renders with ``config.threads`` torch threads). Every stamp's draws are made before any pixel
        and each exposure has its own seed stream, so the output is byte-identical for any number.

    Returns
    -------
    TrainingSetManifest
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LumosValueError(f"generate_training_set: workers must be an integer >= 1, got {workers!r}")
    with torch_threads(config.threads):
        return _generate(config, exposure_paths, catalog, out_dir, neighbour_catalog=neighbour_catalog,
                         progress=progress, workers=workers)


@dataclasses.dataclass(frozen=True)
class _Draws:
    """The random choices of every stamp (arrays of length ``n_stamps``), drawn before any pixel."""

    exposure_index: np.ndarray
    rows: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    pa: np.ndarray
    split: np.ndarray
    has_nbr: np.ndarray
    nbr_rows: np.ndarray
    nbr_pa: np.ndarray
    nbr_dx: np.ndarray
    nbr_dy: np.ndarray
    flux_catalog: pd.DataFrame
    flux_rows: np.ndarray
    reference_flux: np.ndarray | None
    background_scale: np.ndarray
    noise_textured: np.ndarray
    noise_kernel_sigma: np.ndarray
    noise_resample: np.ndarray
    noise_shift_x: np.ndarray
    noise_shift_y: np.ndarray
    mismatch: MismatchDraws | None = None
    sky_removed: np.ndarray | None = None


def _generate(
    config: TeahupooConfig,
    exposure_paths: Sequence[str | os.PathLike[str]],
    catalog: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    neighbour_catalog: pd.DataFrame | None,
    progress: bool,
    workers: int,
) -> TrainingSetManifest:
    """:func:`generate_training_set` in steps: check, draw, fill exposure by exposure, write."""
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    paths = [os.fspath(p) for p in exposure_paths]
    catalog, nbr_catalog = _checked_catalogs(config, paths, catalog, neighbour_catalog)
    out = _output_dir(out_dir)
    draws = _draw_stamps(config, len(paths), catalog, nbr_catalog)
    meta = _initial_meta(config, paths, catalog, nbr_catalog, draws)
    shards = _open_shards(out, config)
    jobs = [(k, path, ids) for k, path in enumerate(paths) if len(ids := np.flatnonzero(draws.exposure_index == k))]
    with tqdm(total=config.n_stamps, desc="training set", unit="stamp", disable=not progress) as bar:
        if workers == 1 or len(jobs) < 2:
            for k, path, ids in jobs:
                _fill_exposure(config, k, path, ids, draws, nbr_catalog, meta, shards, bar)
        else:
            _fill_in_workers(jobs, workers, (config, draws, nbr_catalog, meta, shards), bar)
    shard_entries = _close_shards(shards)
    del shards
    meta_path = _write_meta(out, meta)
    current_survey().write(out / "survey.json")  # the band order of band_epoch; before the manifest, which comes last
    manifest_path = _write_manifest(out, config, paths, catalog, shard_entries)
    elapsed = time.perf_counter() - start_time
    n = config.n_stamps
    return TrainingSetManifest(
        out_dir=out,
        manifest_path=manifest_path,
        meta_path=meta_path,
        shard_paths=[out / e["file"] for e in shard_entries],
        n_stamps=n,
        stamp_size=config.stamp_size,
        elapsed_s=elapsed,
        stamps_per_s=n / elapsed if elapsed > 0 else float("inf"),
    )


def _checked_catalogs(config: TeahupooConfig, paths: list[str], catalog: pd.DataFrame,
                      neighbour_catalog: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validated shape catalogue (or the drawn shape population) and the neighbour catalogue."""
    if not paths:
        raise LumosValueError("exposure_paths is empty; give at least one FITS exposure")
    catalog = validate_catalog(catalog, source="training-set catalogue")
    if len(catalog) == 0:
        raise CatalogError("the training-set catalogue has no rows")
    if neighbour_catalog is None:
        nbr_catalog = catalog
    else:
        nbr_catalog = validate_catalog(neighbour_catalog, source="neighbour catalogue")
        if len(nbr_catalog) == 0:
            raise CatalogError("the neighbour catalogue has no rows; give at least one galaxy or None")
    if config.flux_source is FluxSource.CATALOG or (config.flux_source is FluxSource.BAND_DISTRIBUTION
                                                     and not config.flux_population):
        missing = [c for c in njy_columns() if c not in catalog.columns]
        if len(missing) == len(NB_BANDS):
            raise CatalogError(
                f"flux_source={config.flux_source.value!r} but the catalogue has no flux_nJy_<band> columns"
            )
    if config.shape_population:
        catalog = _population(config, config.shape_population, 14, config.shape_count_slope)
    return catalog, nbr_catalog


def _population(config: TeahupooConfig, n: int, stream: int, count_slope: float) -> pd.DataFrame:
    """``n`` galaxies drawn from the population model (seed stream ``stream``), ``ref_id`` = row."""
    population = draw_galaxies(np.random.default_rng(np.random.SeedSequence([config.seed, stream])), n,
                               i_range=config.population_i_range, count_slope=count_slope)
    population["ref_id"] = np.arange(len(population), dtype=np.int64)
    return population


def _output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """The set's folder, made if needed. A folder that holds another kind of manifest (a simulated
    survey's, say) is refused; an earlier training set there loses its manifest, meta table and survey
    file first, so that a run that stops part-way leaves a folder no reader takes for a set."""
    out = Path(out_dir)
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            kind = json.loads(manifest.read_text()).get("format")
        except (ValueError, AttributeError):
            kind = None
        if kind != FORMAT_NAME:
            raise InputFileError(f"{manifest}: not a training set's manifest (format {kind!r}); "
                                 "give --out a new folder or an earlier training set's")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create the output directory ({exc})") from None
    for stale in ("manifest.json", "meta.parquet", "survey.json"):
        (out / stale).unlink(missing_ok=True)
    return out


def _draw_stamps(config: TeahupooConfig, n_paths: int, catalog: pd.DataFrame, nbr_catalog: pd.DataFrame) -> _Draws:
    """Exposure, catalogue row, sub-pixel shift, angle, split, neighbour, noise texture and truth-model
    mismatch of every stamp, and the share of its sky removed (seed streams 10, 12, 15, 16, 17, 19, 20)."""
    n = config.n_stamps
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 10]))
    exposure_index = rng.integers(0, n_paths, size=n)
    rows = rng.integers(0, len(catalog), size=n)
    if config.subpixel_shifts:
        dx = rng.uniform(-0.5, 0.5, size=n)
        dy = rng.uniform(-0.5, 0.5, size=n)
    else:
        dx = np.zeros(n)
        dy = np.zeros(n)
    pa = rng.uniform(0.0, 180.0, size=n) if config.random_pa else catalog["pa"].to_numpy(np.float64)[rows]
    split = np.asarray(SPLITS)[
        np.searchsorted(np.cumsum(config.split_fractions)[:-1], rng.uniform(size=n), side="right")
    ]
    has_nbr = rng.uniform(size=n) < config.neighbour_fraction
    nbr_rows = rng.integers(0, len(nbr_catalog), size=n)
    nbr_distance = rng.uniform(*config.neighbour_distance, size=n)
    nbr_angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    nbr_pa = rng.uniform(0.0, 180.0, size=n)
    flux_catalog, flux_rows = _flux_rows(config, catalog, rows)
    reference = config.reference_prior
    reference_flux = (None if reference is None else
                      reference.sample(np.random.default_rng(np.random.SeedSequence([config.seed, 15])), n))
    s_lo, s_hi = config.background_scale_range
    background_scale = np.exp(np.random.default_rng(np.random.SeedSequence([config.seed, 16])).uniform(
        np.log(s_lo), np.log(s_hi), size=n))
    texture_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 17]))
    textured = texture_rng.uniform(size=n) < config.noise_texture_fraction
    kernel_sigma = np.where(textured, texture_rng.uniform(*config.noise_kernel_sigma_range, size=n), 0.0)
    kinds = np.asarray(config.noise_resample_kernels, dtype=object)[
        texture_rng.integers(0, len(config.noise_resample_kernels), size=n)]
    resample = np.where(textured, kinds, "none").astype(object)
    shifts = np.where(textured[:, None] & (resample != "none")[:, None], texture_rng.uniform(0.0, 1.0, size=(n, 2)), 0.0)
    return _Draws(
        exposure_index=exposure_index, rows=rows, dx=dx, dy=dy, pa=pa, split=split, has_nbr=has_nbr,
        nbr_rows=nbr_rows, nbr_pa=nbr_pa,
        nbr_dx=np.where(has_nbr, nbr_distance * np.cos(nbr_angle), np.nan),
        nbr_dy=np.where(has_nbr, nbr_distance * np.sin(nbr_angle), np.nan),
        flux_catalog=flux_catalog, flux_rows=flux_rows, reference_flux=reference_flux,
        background_scale=background_scale, noise_textured=textured, noise_kernel_sigma=kernel_sigma,
        noise_resample=resample, noise_shift_x=shifts[:, 0], noise_shift_y=shifts[:, 1],
        mismatch=draw_mismatch(config, n) if config.truth_mismatch else None,
        sky_removed=(None if config.sky_removed_range == (0.0, 0.0) else np.random.default_rng(
            np.random.SeedSequence([config.seed, 20])).uniform(*config.sky_removed_range, size=n)),
    )


def _flux_rows(config: TeahupooConfig, catalog: pd.DataFrame, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The catalogue and rows whose band flux each stamp takes: its own row, or with
    ``FluxSource.BAND_DISTRIBUTION`` an independent draw (seed stream 12) from ``catalog`` or the
    flux population (stream 13)."""
    if config.flux_source is not FluxSource.BAND_DISTRIBUTION:
        return catalog, rows
    flux_catalog = catalog
    if config.flux_population:
        flux_catalog = _population(config, config.flux_population, 13, config.flux_count_slope)
    flux_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 12]))
    return flux_catalog, flux_rng.integers(0, len(flux_catalog), size=len(rows))


def _initial_meta(config: TeahupooConfig, paths: list[str], catalog: pd.DataFrame, nbr_catalog: pd.DataFrame,
                  draws: _Draws) -> dict[str, np.ndarray]:
    """The ``meta.parquet`` columns known before any exposure is read; the rest are zeros to fill."""
    n = config.n_stamps
    rows, nbr_rows, has_nbr = draws.rows, draws.nbr_rows, draws.has_nbr
    noise = {} if not config.noise_texture else {
        "noise_textured": draws.noise_textured, "noise_kernel_sigma": draws.noise_kernel_sigma,
        "noise_resample": draws.noise_resample, "noise_shift_x": draws.noise_shift_x,
        "noise_shift_y": draws.noise_shift_y,
    }
    return {
        "stamp_id": np.arange(n, dtype=np.int64),
        "shard": np.arange(n, dtype=np.int64) // config.shard_size,
        "row": np.arange(n, dtype=np.int64) % config.shard_size,
        "band": np.empty(n, dtype=object),
        "epoch": np.zeros(n, dtype=np.int64),
        "band_epoch": np.zeros(n, dtype=np.int64),
        "ccd": np.zeros(n, dtype=np.int64),
        "ccd_x": np.zeros(n),
        "ccd_y": np.zeros(n),
        "i_auto": catalog["i_auto"].to_numpy(np.float64)[rows],
        "r50": catalog["r50"].to_numpy(np.float64)[rows],
        "sersic_n": np.clip(catalog["sersic_n"].to_numpy(np.float64)[rows], *SERSIC_RANGE),
        "q": np.clip(catalog["q"].to_numpy(np.float64)[rows], 0.05, 1.0),
        "pa": draws.pa,
        "dx": draws.dx,
        "dy": draws.dy,
        "flux": np.zeros(n),
        "exptime": np.zeros(n),
        "psf_fwhm": np.zeros(n),
        "psf_beta": np.zeros(n),
        "source_exposure": np.asarray(paths, dtype=object)[draws.exposure_index],
        "split": draws.split.astype(object),
        "ref_id": catalog["ref_id"].to_numpy(np.int64)[rows],
        "zero_point": np.zeros(n),
        "flux_outside": np.zeros(n),
        "n_masked": np.zeros(n, dtype=np.int64),
        "nbr_ref_id": np.where(has_nbr, nbr_catalog["ref_id"].to_numpy(np.int64)[nbr_rows], -1),
        "nbr_i_auto": np.where(has_nbr, nbr_catalog["i_auto"].to_numpy(np.float64)[nbr_rows], np.nan),
        "nbr_flux": np.zeros(n),
        "nbr_dx": draws.nbr_dx,
        "nbr_dy": draws.nbr_dy,
        "flux_ref_id": draws.flux_catalog["ref_id"].to_numpy(np.int64)[draws.flux_rows],
        "background_scale": np.ones(n),
        **noise,
        **_mismatch_meta(draws.mismatch, catalog["r50"].to_numpy(np.float64)[rows]),
        **({} if draws.sky_removed is None else {"sky_removed": np.zeros(n)}),
        **({"star_psf": np.zeros(n, dtype=bool)} if config.truth_psf == "stars" else {}),
    }


def _mismatch_meta(mismatch: MismatchDraws | None, r50: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`MISMATCH_META_COLUMNS` known before any exposure is read (the PSF columns are filled
    per exposure); none without a mismatch."""
    if mismatch is None:
        return {}
    return {"truth_psf_fwhm": np.zeros(len(r50)), "truth_psf_beta": np.zeros(len(r50)),
            "truth_r50": r50 * mismatch.r50_factor, "knot_flux_frac": mismatch.knot_frac,
            "n_knots": mismatch.n_knots.astype(np.int64)}


def _fill_exposure(config: TeahupooConfig, k: int, path: str, ids: np.ndarray, draws: _Draws,
                   nbr_catalog: pd.DataFrame, meta: dict[str, np.ndarray], shards: list[np.ndarray], bar: Any) -> None:
    """Cut, render and store the stamps ``ids`` of exposure ``k`` (positions and noise: seed stream (11, k); fresh
    noise of the re-textured backgrounds: stream (18, k))."""
    exposure = read_exposure(path)
    ny, nx = exposure.shape
    margin = config.margin
    if nx - 1 - 2 * margin < 0 or ny - 1 - 2 * margin < 0:
        raise LumosValueError(
            f"{path}: image {ny}x{nx} is too small for stamps with edge_margin={margin}; lower edge_margin"
        )
    local = np.random.default_rng(np.random.SeedSequence([config.seed, 11, k]))
    cx, cy = _centres(config, exposure, path, len(ids), local)
    beta = exposure.psf_beta if exposure.psf_beta is not None else config.default_psf_beta
    _exposure_meta(config, exposure, ids, cx, cy, beta, draws, nbr_catalog, meta)
    star = None
    if config.truth_psf == "stars":
        star = exposure_star_psf(exposure.data, path)
        meta["star_psf"][ids] = star is not None
        star = None if star is None else star.galsim()
    texture_rng = (np.random.default_rng(np.random.SeedSequence([config.seed, 18, k])) if config.noise_texture
                   else None)
    for lo in range(0, len(ids), config.batch_size):
        sel = ids[lo : lo + config.batch_size]
        part = slice(lo, lo + len(sel))
        cutout, model = _render_stamps(config, exposure, beta, sel, cx[part], cy[part], draws, nbr_catalog, meta, local,
                                       texture_rng, star)
        for j, stamp_id in enumerate(sel):
            shard = shards[stamp_id // config.shard_size]
            row = stamp_id % config.shard_size
            shard[row, 0] = cutout[j]
            shard[row, 1] = model[j]
        bar.update(len(sel))


_WORKER_STATE: dict[str, Any] = {}
"""What a forked stamp worker reads: ``(config, draws, nbr_catalog, meta, shards)``."""


class _NoBar:
    """A progress bar that counts nothing (a worker's; the parent's bar counts finished exposures)."""

    def update(self, n: int) -> None:
        """Ignore ``n``."""


def _fill_job(job: tuple[int, str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`_fill_exposure` in a forked worker: the stamps go straight to the shared shard memmaps;
    returns the stamp ids and their ``meta`` rows, which the parent copies into its own."""
    k, path, ids = job
    config, draws, nbr_catalog, meta, shards = _WORKER_STATE["state"]
    with torch_threads(config.threads):
        _fill_exposure(config, k, path, ids, draws, nbr_catalog, meta, shards, _NoBar())
    for shard in shards:
        shard.flush()
    return ids, {name: column[ids] for name, column in meta.items()}


def _fill_in_workers(jobs: list[tuple[int, str, np.ndarray]], workers: int, state: tuple[Any, ...], bar: Any) -> None:
    """Run ``jobs`` (exposure index, path, stamp ids) in ``workers`` forked processes."""
    from lumos_ops.sim.worker_pool import forked_pool

    meta = state[3]
    _WORKER_STATE["state"] = state
    try:
        with forked_pool(min(workers, len(jobs))) as pool:
            for ids, rows in pool.imap_unordered(_fill_job, jobs):
                for name, values in rows.items():
                    meta[name][ids] = values
                bar.update(len(ids))
    finally:
        _WORKER_STATE.clear()


def _centres(config: TeahupooConfig, exposure: Exposure, path: str, n: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Integer stamp centres (x, y pixels): uniform ``config.margin`` px inside the CCD, and with
    ``config.target_clearance`` only where the exposure's own sources are at least that far (for a
    ``config.clearance_fraction`` share of the stamps; the others anywhere)."""
    ny, nx = exposure.shape
    margin = config.margin
    if config.target_clearance is None:
        cx = rng.integers(margin, nx - margin, size=n).astype(np.float64)
        cy = rng.integers(margin, ny - margin, size=n).astype(np.float64)
        return cx, cy
    from lumos_ops.noise_calibration import source_clearance

    fwhm_px = float(exposure.psf_fwhm) / exposure.pixel_scale
    inner = source_clearance(exposure.data, fwhm_px=fwhm_px)[margin : ny - margin, margin : nx - margin]
    free = np.flatnonzero(inner.ravel() >= config.target_clearance)
    if free.size == 0:
        raise LumosValueError(
            f"{path}: no stamp centre {config.target_clearance:g} px from the exposure's own sources; "
            "lower target_clearance or leave this exposure out"
        )
    pick = free[rng.integers(0, free.size, size=n)]
    width = nx - 2 * margin
    if config.clearance_fraction < 1.0:
        anywhere = rng.random(n) >= config.clearance_fraction
        pick[anywhere] = rng.integers(0, inner.size, size=int(anywhere.sum()))
    return (pick % width + margin).astype(np.float64), (pick // width + margin).astype(np.float64)


def _exposure_meta(config: TeahupooConfig, exposure: Exposure, ids: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                   beta: float, draws: _Draws, nbr_catalog: pd.DataFrame, meta: dict[str, np.ndarray]) -> None:
    """Fill the exposure's columns of ``meta`` for stamps ``ids``: band, CCD position, target and neighbour flux (e-/s)."""
    if draws.reference_flux is not None:
        flux = draws.reference_flux[ids]
        zero_point = float(exposure.zero_point) if exposure.zero_point is not None else float("nan")
    else:
        flux, zero_point = _stamp_fluxes(
            exposure, _band_njy(draws.flux_catalog, exposure.band, draws.flux_rows[ids], config.flux_source),
            config.flux_range,
        )
    meta["band"][ids] = exposure.band
    meta["epoch"][ids] = exposure.epoch
    meta["band_epoch"][ids] = exposure.band_epoch
    meta["ccd"][ids] = exposure.ccdnum if exposure.ccdnum is not None else 0
    meta["ccd_x"][ids] = cx
    meta["ccd_y"][ids] = cy
    meta["flux"][ids] = flux
    meta["exptime"][ids] = exposure.exptime
    meta["psf_fwhm"][ids] = exposure.psf_fwhm
    meta["psf_beta"][ids] = beta
    if draws.mismatch is not None:
        meta["psf_fwhm"][ids] = exposure.psf_fwhm * draws.mismatch.psf_scale[ids]
        meta["truth_psf_fwhm"][ids] = meta["psf_fwhm"][ids] * draws.mismatch.fwhm_factor[ids]
        meta["truth_psf_beta"][ids] = np.where(np.isnan(draws.mismatch.beta[ids]), beta, draws.mismatch.beta[ids])
    meta["zero_point"][ids] = zero_point
    nbr_source = (FluxSource.AUTO if config.flux_source in (FluxSource.BAND_DISTRIBUTION, FluxSource.REFERENCE_PRIOR)
                  else config.flux_source)
    nbr_flux, _ = _stamp_fluxes(
        exposure, _band_njy(nbr_catalog, exposure.band, draws.nbr_rows[ids], nbr_source), config.flux_range
    )
    meta["nbr_flux"][ids] = np.where(draws.has_nbr[ids], nbr_flux, 0.0)


def _render_stamps(config: TeahupooConfig, exposure: Exposure, beta: float, sel: np.ndarray, cx: np.ndarray,
                   cy: np.ndarray, draws: _Draws, nbr_catalog: pd.DataFrame, meta: dict[str, np.ndarray],
                   rng: np.random.Generator, texture_rng: np.random.Generator | None = None, star: Any = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One batch: noisy cutouts (float32, e-/s) and unit-flux models (float64) of stamps ``sel``, shape (k, S, S);
    fills their ``background_scale``, ``flux_outside`` and ``n_masked``. With ``texture_rng`` the drawn
    stamps' backgrounds are re-textured (:func:`_background`); with ``star`` (the exposure's ePSF as a
    GalSim profile, :mod:`lumos_ops.sim.star_truth`) the galaxies are drawn with it, their models not."""
    from lumos_ops.render import render_galaxies

    size = config.stamp_size
    psf_fwhm = exposure.psf_fwhm if draws.mismatch is None else meta["psf_fwhm"][sel]
    rendered = render_galaxies(
        r50=meta["r50"][sel], sersic_n=meta["sersic_n"][sel], q=meta["q"][sel], pa=draws.pa[sel],
        psf_fwhm=psf_fwhm, psf_beta=beta, dx=draws.dx[sel], dy=draws.dy[sel], flux=1.0, size=size,
        pixel_scale=config.pixel_scale, device=config.device,
    )
    model = np.asarray(rendered.images, dtype=np.float64)
    if star is not None:
        truth = draw_with_star_psf(star, r50=meta["r50"][sel], sersic_n=meta["sersic_n"][sel], q=meta["q"][sel],
                                   pa=draws.pa[sel], dx=draws.dx[sel], dy=draws.dy[sel], size=size,
                                   pixel_scale=config.pixel_scale)
    else:
        truth = model if draws.mismatch is None else render_truth(
            draws.mismatch, sel, r50=meta["r50"][sel], sersic_n=meta["sersic_n"][sel], q=meta["q"][sel], pa=draws.pa[sel],
            dx=draws.dx[sel], dy=draws.dy[sel], model_fwhm=meta["psf_fwhm"][sel], model_beta=beta, size=size,
            pixel_scale=config.pixel_scale, device=config.device,
        )
    # A negative (reference-prior) flux is a deterministic deficit: Poisson noise of light only.
    target = meta["flux"][sel][:, None, None]
    counts = truth * (np.clip(target, 0.0, None) * exposure.exptime)
    counts += _neighbours(sel, meta, draws.nbr_rows, draws.nbr_pa, nbr_catalog, exposure, beta, config,
                          psf_fwhm, star) * exposure.exptime
    noisy = rng.poisson(np.clip(counts, 0.0, None)) / exposure.exptime + truth * np.clip(target, None, 0.0)
    scale = draws.background_scale[sel]
    background = _background(config, exposure, sel, cx, cy, draws, texture_rng) * scale[:, None, None]
    if draws.sky_removed is not None:
        finite = np.isfinite(background).any(axis=(1, 2))
        sky = np.zeros(len(sel))
        sky[finite] = np.nanmedian(background[finite].reshape(int(finite.sum()), -1), axis=1)
        meta["sky_removed"][sel] = draws.sky_removed[sel] * sky
        background = background - meta["sky_removed"][sel][:, None, None]
    meta["background_scale"][sel] = scale
    meta["flux_outside"][sel] = rendered.flux_outside
    meta["n_masked"][sel] = np.isnan(background).sum(axis=(1, 2))
    return (background + noisy).astype(np.float32), model


def _background(config: TeahupooConfig, exposure: Exposure, sel: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                draws: _Draws, texture_rng: np.random.Generator | None) -> np.ndarray:
    """Background cutouts (e-/s) of stamps ``sel``; with ``texture_rng``, those drawn for the noise texture are cut
    with a margin, re-textured (:func:`lumos_ops.sim.noise_texture.retexture`) and cropped."""
    size = config.stamp_size
    if texture_rng is None:
        return cut_stamps(exposure.data, cx, cy, size=size).data
    pad = kernel_padding(config.noise_kernel_sigma_range[1])
    padded = cut_stamps(exposure.data, cx, cy, size=size + 2 * pad).data.astype(np.float64)
    background = padded[:, pad : pad + size, pad : pad + size].copy()
    for j, stamp in enumerate(sel):
        if draws.noise_textured[stamp]:
            kind, sigma = str(draws.noise_resample[stamp]), float(draws.noise_kernel_sigma[stamp])
            kernel_x = texture_kernel_1d(sigma, kind, float(draws.noise_shift_x[stamp]))
            kernel_y = texture_kernel_1d(sigma, kind, float(draws.noise_shift_y[stamp]))
            background[j] = retexture(padded[j], kernel_x, kernel_y, pad, texture_rng)
    return background


def _close_shards(shards: list[np.ndarray]) -> list[dict[str, Any]]:
    """Flush the shard memmaps; their manifest entries (``file``, ``n``)."""
    entries = []
    for index, shard in enumerate(shards):
        shard.flush()
        entries.append({"file": f"shards/shard-{index:05d}.npy", "n": int(shard.shape[0])})
    return entries


def _write_meta(out: Path, meta: dict[str, np.ndarray]) -> Path:
    columns = (META_COLUMNS + (NOISE_META_COLUMNS if "noise_textured" in meta else ())
               + (MISMATCH_META_COLUMNS if "knot_flux_frac" in meta else ()) + (("sky_removed",) if "sky_removed" in meta else ())
               + (("star_psf",) if "star_psf" in meta else ()))
    table = pd.DataFrame({name: meta[name] for name in columns})
    for column in ("band", "source_exposure", "split") + (("noise_resample",) if "noise_textured" in meta else ()):
        table[column] = table[column].astype(str)
    meta_path = out / "meta.parquet"
    table.to_parquet(meta_path, index=False)
    return meta_path


def _write_manifest(out: Path, config: TeahupooConfig, paths: list[str], catalog: pd.DataFrame,
                    shard_entries: list[dict[str, Any]]) -> Path:
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": config.seed,
        "n_stamps": config.n_stamps,
        "stamp_size": config.stamp_size,
        "pixel_scale": config.pixel_scale,
        "shards": shard_entries,
        "channels": ["cutout_e_per_s", "model_unit_flux"],
        "config": config.to_dict(),
        "exposures": paths,
        "n_catalog_rows": int(len(catalog)),
    }
    shape = image_shape(paths[0])  # the CCD positions' scale, wherever the set is read from later
    if shape is not None:
        manifest["ccd_shape"] = list(shape)
    return write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
