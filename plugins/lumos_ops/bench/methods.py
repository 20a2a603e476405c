"""``lumos bench methods``: accuracy of the classical photometry baselines on held-out simulations.

Steps: simulate a small PAUCam-like survey (:func:`lumos_ops.sim.simulate_survey`), generate
held-out TEAHUPOO stamps big enough for the 30-45 px background annulus (96 px) on its exposures
(:func:`lumos_ops.sim.generate_training_set`), measure every stamp with the classical methods
(:mod:`lumos_ops.evaluation.stamp_photometry`) and compare them with the true fluxes per i_auto bin
(:mod:`lumos_ops.evaluation.method_comparison`, the paper's Fig. 7 without LUMOS), plus the renderer benchmark
(:func:`lumos_ops.render.benchmark.run_render_benchmark`). Writes ``methods.json`` and
``methods.png``; :mod:`lumos_ops.bench.methods_table` prints them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops import __version__
from lumos_ops.evaluation.method_comparison import (
    DEFAULT_MAG_BINS,
    MethodMetrics,
    compare_methods,
    comparison_to_dict,
    plot_comparison,
)
from lumos_ops.evaluation.stamp_photometry import STAMP_METHODS, StampMeasurer, measure_stamp_set
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.stats import sigma68

__all__ = ["MethodsBenchConfig", "run_methods_benchmark"]

@dataclasses.dataclass(frozen=True, kw_only=True)
class MethodsBenchConfig:
    """What ``lumos bench methods`` simulates and measures.

    Attributes
    ----------
    n_stamps : int
        Held-out TEAHUPOO stamps (>= 10,000 for the report).
    stamp_size : int
        Stamp side (pixels); >= 93 keeps the whole 45 px annulus.
    ccd_shape : (int, int)
        Shape of the simulated CCD images the stamps are cut from (rows, columns).
    bands : tuple of str
        Narrow bands of the simulated survey.
    n_exposures, n_epochs : int
        Exposures per band and camera epoch; epochs (1 or 2).
    methods : tuple of str
        Keys of :data:`STAMP_METHODS` to run.
    mag_bins : tuple of float
        i_auto bin edges (AB).
    chunk_size : int
        Stamps measured at once.
    render_profiles : int
        Profiles of the renderer benchmark (0 skips it).
    seed : int
        Seed of the survey, the stamps and the bootstrap.
    """

    n_stamps: int = 10_000
    stamp_size: int = 96
    ccd_shape: tuple[int, int] = (2048, 2048)
    bands: tuple[str, ...] = ("NB455", "NB615", "NB685", "NB845")
    n_exposures: int = 1
    n_epochs: int = 2
    methods: tuple[str, ...] = ("aperture", "modelfit", "optimal")
    mag_bins: tuple[float, ...] = DEFAULT_MAG_BINS
    chunk_size: int = 1024
    render_profiles: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_stamps < 1:
            raise LumosValueError(f"MethodsBenchConfig.n_stamps must be >= 1, got {self.n_stamps}")
        if self.stamp_size < 8:
            raise LumosValueError(f"MethodsBenchConfig.stamp_size must be >= 8 pixels, got {self.stamp_size}")
        unknown = [m for m in self.methods if m not in STAMP_METHODS]
        if unknown or not self.methods:
            raise LumosValueError(
                f"MethodsBenchConfig.methods must name some of {', '.join(STAMP_METHODS)}, got {list(self.methods)}"
            )
        if self.chunk_size < 1 or self.render_profiles < 0:
            raise LumosValueError("MethodsBenchConfig.chunk_size must be >= 1 and render_profiles >= 0")


def _simulate(config: MethodsBenchConfig, workdir: Path, progress: bool) -> tuple[Path, dict[str, Any]]:
    from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey

    start = time.perf_counter()
    survey = simulate_survey(
        SurveyConfig(
            ccd_shape=config.ccd_shape,
            bands=config.bands,
            n_exposures=config.n_exposures,
            n_epochs=config.n_epochs,
            seed=config.seed,
        ),
        workdir / "survey",
        progress=progress,
    )
    survey_s = time.perf_counter() - start
    catalog = pd.read_parquet(survey.catalog_path)
    start = time.perf_counter()
    stamps_dir = workdir / "stamps"
    generate_training_set(
        TeahupooConfig(
            n_stamps=config.n_stamps,
            stamp_size=config.stamp_size,
            split_fractions=(0.0, 0.0, 1.0),
            seed=config.seed + 1,
        ),
        survey.exposure_paths,
        catalog,
        stamps_dir,
        progress=progress,
    )
    info = {
        "survey_seconds": survey_s,
        "stamps_seconds": time.perf_counter() - start,
        "n_exposure_files": len(survey.exposure_paths),
        "n_catalog_galaxies": int(survey.n_galaxies),
    }
    return stamps_dir, info


def run_methods_benchmark(
    config: MethodsBenchConfig,
    out_dir: str | os.PathLike[str],
    *,
    workdir: str | os.PathLike[str] | None = None,
    stamps: str | os.PathLike[str] | None = None,
    extra: Mapping[str, StampMeasurer] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Simulate held-out stamps, measure them with the baselines, write ``methods.json`` / ``.png``.

    Parameters
    ----------
    config : MethodsBenchConfig
    out_dir : path-like
        Where ``methods.json`` and ``methods.png`` are written (created).
    workdir : path-like, keyword-only
        Where the simulated survey and stamps go (default ``out_dir / "sim"``).
    stamps : path-like, keyword-only
        An existing TEAHUPOO set to measure instead of simulating one (all its stamps).
    extra : mapping of str to StampMeasurer, keyword-only
        More methods to compare (e.g. LUMOS), see :func:`~lumos_ops.evaluation.stamp_photometry.measure_stamp_set`.
    progress : bool, keyword-only
        Progress bars.

    Returns
    -------
    dict
        The content of ``methods.json``: ``config``, ``simulation``, ``metrics`` (overall and
        per i_auto bin: ``n``, ``bias``, ``sigma68`` and bootstrap errors), ``flags`` (fraction of
        flagged measurements), ``overall_by_band``, ``pull_sigma68`` (sigma68 of ``(f - f0) / flux_err``, 1 for calibrated
        errors), ``timing`` (seconds and stamps per second per method, and of the shared ``background``), ``render``.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create the output directory ({exc})") from None
    if stamps is None:
        stamps_dir, simulation = _simulate(config, Path(workdir) if workdir else out / "sim", progress)
    else:
        stamps_dir, simulation = Path(stamps), {"stamps": os.fspath(stamps)}
    meta, results, seconds = measure_stamp_set(
        stamps_dir, methods=config.methods, extra=extra, chunk_size=config.chunk_size, progress=progress
    )
    truth = meta["flux"].to_numpy(np.float64)
    metrics = compare_methods(
        {m: r["flux"].to_numpy() for m, r in results.items()},
        truth,
        meta["i_auto"].to_numpy(np.float64),
        bins=config.mag_bins,
        seed=config.seed,
    )
    report = _report(config, simulation, meta, results, seconds, metrics)
    (out / "methods.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    plot_comparison(metrics, out / "methods.png", title=f"{len(meta)} held-out TEAHUPOO stamps ({config.stamp_size} px)")
    return report


def _report(config: MethodsBenchConfig, simulation: dict[str, Any], meta: pd.DataFrame, results: dict[str, pd.DataFrame],
            seconds: dict[str, float], metrics: MethodMetrics) -> dict[str, Any]:
    """The content of ``methods.json`` (see :func:`run_methods_benchmark`), the renderer benchmark included."""
    truth = meta["flux"].to_numpy(np.float64)
    render: dict[str, Any] | None = None
    if config.render_profiles:
        from lumos_ops.render.benchmark import run_render_benchmark

        render = run_render_benchmark(config.render_profiles, seed=config.seed, kind="catalogue")
    return {
        "lumos_ops_version": __version__,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
        "simulation": {
            **simulation,
            "n_stamps": int(len(meta)),
            "truth_flux_median": float(np.median(truth)),
            "i_auto_range": [float(meta["i_auto"].min()), float(meta["i_auto"].max())],
            "stamps_with_masked_pixels": float((meta["n_masked"] > 0).mean()) if "n_masked" in meta else None,
        },
        "metrics": comparison_to_dict(metrics),
        "overall_by_band": _by_band(meta, results, truth),
        "flags": {
            m: float((r["flag"].to_numpy() != 0).mean()) if "flag" in r else None for m, r in results.items()
        },
        "pull_sigma68": {
            m: sigma68((r["flux"].to_numpy() - truth) / r["flux_err"].to_numpy()) if "flux_err" in r else None
            for m, r in results.items()
        },
        "timing": {m: {"seconds": s, "stamps_per_second": len(meta) / s if s > 0 else None} for m, s in seconds.items()},
        "render": render,
    }


def _by_band(meta: pd.DataFrame, results: dict[str, pd.DataFrame], truth: np.ndarray) -> dict[str, Any]:
    """Overall bias / sigma68 per band (bluer bands have less flux per exposure)."""
    out: dict[str, Any] = {}
    bands = meta["band"].astype(str).to_numpy()
    for band in sorted(set(bands)):
        sel = bands == band
        fluxes = {m: r["flux"].to_numpy()[sel] for m, r in results.items()}
        summary = compare_methods(fluxes, truth[sel], meta["i_auto"].to_numpy(np.float64)[sel], n_boot=0)
        out[band] = comparison_to_dict(summary)["overall"]
    return out
