"""Reprocessing: re-measure every registered exposure of a range of nights with given model versions.

The exposures are the ones the nightly runs registered (``lumos.exposures``); each is measured
again with the configured methods and written under their model versions
(``write_measurements(..., record_exposure=False)``): rows of other versions, the exposure's
status and its nightly bookkeeping are left alone, so production rows and co-adds stay as they are
until the new version is promoted (``docs/registry.md``). Resumable: an exposure that already holds
rows of every requested (method, version) is skipped, so a cleared or rerun reprocessing measures
only what is left. :func:`reprocess_progress` gives the per-night counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from lumos_ops.exceptions import LumosError, LumosValueError
from lumos_ops.pipeline.config import LUMOS_METHODS, NightConfig
from lumos_ops.pipeline.database import check_schema
from lumos_ops.pipeline.keys import validate_night
from lumos_ops.pipeline.night import Measurer, attempt_each, code_version, measure_task
from lumos_ops.pipeline.plan import ExposureResult, ExposureTask
from lumos_ops.pipeline.storage import DownloadCache, ObjectStore
from lumos_ops.pipeline.writer import ModelVersion, load_catalog, register_model_versions, start_run, write_measurements

__all__ = ["ReprocessPlan", "plan_reprocess", "reprocess_chunk", "finish_reprocess", "reprocess_progress"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReprocessPlan:
    """The exposures left to measure, and the run record opened for each night of the range."""

    versions: Mapping[str, str]
    runs: Mapping[str, int]
    tasks: tuple[ExposureTask, ...]
    n_registered: int

    def chunks(self, max_chunks: int, min_size: int = 1) -> list[tuple[ExposureTask, ...]]:
        """The tasks in at most ``max_chunks`` runs of at least ``min_size`` consecutive exposures
        (see ``NightPlan.chunks``)."""
        from lumos_ops.pipeline.plan import NightPlan

        return NightPlan(night="", run_id=0, tasks=self.tasks).chunks(max_chunks, min_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom)."""
        return {"versions": dict(self.versions), "runs": dict(self.runs), "n_registered": self.n_registered,
                "tasks": [t.to_dict() for t in self.tasks]}


def _nights(first_night: str, last_night: str) -> tuple[str, str]:
    first, last = validate_night(first_night), validate_night(last_night)
    if dt.date.fromisoformat(last) < dt.date.fromisoformat(first):
        raise LumosValueError(f"last_night={last} is before first_night={first}")
    return first, last


def plan_reprocess(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    *,
    first_night: str,
    last_night: str,
    dag_id: str = "lumos-reprocess",
    dag_run_id: str,
) -> ReprocessPlan:
    """Open a run record per night with registered exposures and list what is left to measure.

    Parameters
    ----------
    config : NightConfig
        Methods, their model versions (``model_versions``; a LUMOS method needs an explicit one,
        so that reprocessing never writes under the production version by accident) and the
        checkpoint (``model_key`` or ``measure_options['model']``).
    first_night, last_night : str
        Inclusive range (``YYYY-MM-DD``).

    Raises
    ------
    LumosValueError
        A LUMOS method without an explicit model version, or an empty/inverted range.
    """
    from lumos_ops.io.catalog import read_catalog

    first, last = _nights(first_night, last_night)
    config.check_methods()
    missing = [m for m in config.methods if m not in config.model_versions]
    if missing:
        raise LumosValueError(f"reprocessing {missing} needs their model version (model_versions, e.g. "
                              f"{missing[0]}={missing[0]}-2026.12): rows are written under it, next to production's")
    versions = {m: config.model_version(m) for m in config.methods}
    if len(set(versions.values())) < len(versions):
        raise LumosValueError(f"model_versions {versions}: give each method its own version string")
    check_schema(engine)
    _refuse_production_versions(engine, versions)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT e.exposure_id, e.object_key, e.night, e.expnum, e.ccd, coalesce(e.size_bytes, 0) AS size, "
            "coalesce(e.checksum, '') AS checksum, "
            "(SELECT count(DISTINCT (m.method, m.model_version)) FROM lumos.measurements AS m "
            " WHERE m.exposure_id = e.exposure_id AND (m.method, m.model_version) IN "
            "   (SELECT * FROM unnest(CAST(:methods AS text[]), CAST(:versions AS text[])))) AS n_have "
            "FROM lumos.exposures AS e WHERE e.night BETWEEN :first AND :last ORDER BY e.night, e.expnum, e.ccd"
        ), {"first": first, "last": last, "methods": list(versions), "versions": list(versions.values())}).mappings().all()
    nights = sorted({str(r["night"]) for r in rows})
    runs = {night: start_run(engine, dag_id=dag_id, dag_run_id=dag_run_id, night=night, code_version=code_version(),
                             settings={**config.to_dict(), "reprocess": True}) for night in nights}
    if not rows:
        log.info("reprocess %s..%s: no registered exposures: nothing to do", first, last)
        return ReprocessPlan(versions=versions, runs=runs, tasks=(), n_registered=0)
    register_model_versions(engine, [
        ModelVersion(model_version=v, method=m, kind="lumos" if m in LUMOS_METHODS else "classical")
        for m, v in versions.items()
    ], overwrite=False, reprocessing=True)
    cache = DownloadCache(config.resolved_cache_dir())
    catalog_path, catalog_info, _ = cache.fetch(store, config.catalog_key)
    load_catalog(engine, read_catalog(catalog_path), checksum=catalog_info.checksum)
    tasks = tuple(
        ExposureTask(exposure_id=int(r["exposure_id"]), key=r["object_key"], night=str(r["night"]),
                     expnum=int(r["expnum"]), ccd=int(r["ccd"]), size=int(r["size"]), checksum=r["checksum"],
                     run_id=runs[str(r["night"])], catalog_key=config.catalog_key,
                     catalog_checksum=catalog_info.checksum)
        for r in rows if int(r["n_have"]) < len(versions)
    )
    log.info("reprocess %s..%s with %s: %d of %d exposures left", first, last, versions, len(tasks), len(rows))
    return ReprocessPlan(versions=versions, runs=runs, tasks=tasks, n_registered=len(rows))


def _refuse_production_versions(engine: sa.Engine, versions: Mapping[str, str]) -> None:
    """Reprocessing writes under new versions. Refused: a method's production version, the version
    the nights are configured to write (``LUMOS_MODEL_VERSIONS``, an operator override), and, for a
    method without a production version, the nights' default (``aperture-1``, the shipped LUMOS
    checkpoint's name): their rows would be replaced."""
    from lumos_ops.pipeline.config import PipelineSettings
    from lumos_ops.pipeline.registry import production_versions

    production = production_versions(engine, list(versions))
    configured = PipelineSettings.from_env().night.model_versions
    default = NightConfig(store_url=".", methods=tuple(versions)).model_version
    clash = [f"{m}={v}" for m, v in versions.items()
             if v == production.get(m) or v == configured.get(m) or (m not in production and v == default(m))]
    if clash:
        method = clash[0].split("=")[0]
        raise LumosValueError(f"model_versions {', '.join(clash)}: a version the nights write; reprocess under a "
                              f"new version (e.g. {method}-2026.12) and promote it when it is right")


def reprocess_chunk(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    tasks: Sequence[ExposureTask],
    *,
    measurer: Measurer | None = None,
) -> list[ExposureResult]:
    """Measure and write (under the configured versions only) each exposure of a chunk.

    Every exposure is attempted whatever fails before it; nothing of the nightly bookkeeping
    changes. Raises like ``process_chunk``: :class:`BadInputError` when every failure is an input
    error, :class:`LumosError` otherwise (a retry measures only what is left).
    """
    versions = {m: config.model_version(m) for m in config.methods}

    def step(task: ExposureTask) -> ExposureResult:
        measured = measure_task(store, config, task, measurer=measurer)
        start = time.perf_counter()
        try:
            n = write_measurements(engine, measured.table, exposure_id=task.exposure_id, run_id=task.run_id,
                                   meta=measured.meta, model_versions=versions, record_exposure=False)
        except LumosError as exc:
            raise type(exc)(f"{task.key}: {exc}") from exc
        measured.timings["write_s"] = time.perf_counter() - start
        log.info("reprocess %s: %d rows of %s", task.label, n, versions)
        return ExposureResult(exposure_id=task.exposure_id, key=task.key, status="done", n_measurements=n,
                              downloaded=measured.downloaded, **measured.timings)

    return attempt_each(tasks, step)


def finish_reprocess(engine: sa.Engine, runs: Mapping[str, int], versions: Mapping[str, str], *,
                     outlier_fraction: float = 0.0) -> pd.DataFrame:
    """Co-add every reprocessed night in the reprocessed versions only (each gets its own co-adds;
    production's and their provenance are left as they are; ``outlier_fraction`` the survey's
    ``coadd_outlier_fraction``) and close the run records: ``success`` when every
    registered exposure of the night holds rows of every (method, version) of ``versions``, else
    ``partial``. Returns :func:`reprocess_progress`."""
    from lumos_ops.pipeline.coadd import coadd_night
    from lumos_ops.pipeline.writer import finish_run

    if not runs:
        return reprocess_progress(engine, versions, first_night="2000-01-01", last_night="2000-01-01")
    progress = reprocess_progress(engine, versions, first_night=min(runs), last_night=max(runs))
    complete = dict(zip(progress["night"], progress["n_complete"] == progress["n_exposures"]))
    for night, run_id in sorted(runs.items()):
        coadd_night(engine, night=night, run_id=run_id, outlier_fraction=outlier_fraction, versions=versions)
        finish_run(engine, run_id, status="success" if complete.get(night, False) else "partial")
    return progress


def reprocess_progress(engine: sa.Engine, versions: Mapping[str, str], *, first_night: str,
                       last_night: str) -> pd.DataFrame:
    """Per night: registered exposures, exposures holding rows of every (method, version), rows.

    Returns
    -------
    DataFrame
        ``night``, ``n_exposures``, ``n_complete``, ``n_rows`` (measurements of those versions).
    """
    first, last = _nights(first_night, last_night)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "WITH wanted AS (SELECT * FROM unnest(CAST(:methods AS text[]), CAST(:versions AS text[])) "
            "                AS w(method, model_version)), "
            "per_exposure AS (SELECT e.exposure_id, e.night, count(DISTINCT m.method || '/' || m.model_version) AS n_pairs, "
            "                 count(m.ref_id) AS n_rows FROM lumos.exposures AS e "
            "                 LEFT JOIN lumos.measurements AS m ON m.exposure_id = e.exposure_id "
            "                   AND (m.method, m.model_version) IN (SELECT method, model_version FROM wanted) "
            "                 WHERE e.night BETWEEN :first AND :last GROUP BY e.exposure_id, e.night) "
            "SELECT night, count(*) AS n_exposures, count(*) FILTER (WHERE n_pairs = :n) AS n_complete, "
            "CAST(sum(n_rows) AS bigint) AS n_rows FROM per_exposure GROUP BY night ORDER BY night"
        ), {"first": first, "last": last, "methods": list(versions), "versions": list(versions.values()),
            "n": len(versions)}).mappings().all()
    frame = pd.DataFrame(rows, columns=["night", "n_exposures", "n_complete", "n_rows"])
    frame["night"] = frame["night"].astype(str)
    return frame
