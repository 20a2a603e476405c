"""The night report: counts, failures, timings and a few PNG plots, stored in object storage.

Objects written under ``<report_prefix>/<night>/``: ``summary.json``, ``timings.png`` (per-exposure
download / measure / write seconds), ``snr.png`` (signal-to-noise of the measurements per method)
and ``coadds.png`` (co-added AB magnitude against the catalogue's ``i_auto``).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.locks import REPORT_LOCK, night_lock
from lumos_ops.pipeline.plan import CoaddSummary, NightReport
from lumos_ops.pipeline.storage import ObjectStore
from lumos_ops.pipeline.writer import finish_run

__all__ = ["night_status", "night_counts", "failure_message", "report_night", "run_found_exposures"]

log = logging.getLogger(__name__)


def night_status(n_exposures: int, n_done: int, n_failed: int) -> str:
    """``empty`` (nothing to do), ``success``, ``partial`` (some failed) or ``failed`` (none done)."""
    if n_exposures == 0:
        return "empty"
    if n_failed == 0 and n_done == n_exposures:
        return "success"
    return "partial" if n_done else "failed"


_COUNTS = """
SELECT count(*) AS n_exposures,
       count(*) FILTER (WHERE status = 'done') AS n_done,
       count(*) FILTER (WHERE status = 'failed') AS n_failed,
       count(*) FILTER (WHERE status NOT IN ('done', 'failed')) AS n_pending,
       count(*) FILTER (WHERE status <> 'done' AND measured_run_id IS NOT NULL) AS n_stale,
       coalesce(sum(n_measurements) FILTER (WHERE status = 'done'), 0) AS n_measurements,
       coalesce(sum(n_measurements) FILTER (WHERE status <> 'done' AND measured_run_id IS NOT NULL), 0)
           AS n_stale_measurements
FROM lumos.exposures WHERE night = :night
"""

_COADD_COUNTS = """
SELECT count(*) AS n_coadds, count(*) FILTER (WHERE c.partial) AS n_coadds_partial
FROM lumos.coadds AS c
WHERE EXISTS (SELECT 1 FROM lumos.measurements AS m JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id
              WHERE e.night = :night AND m.ref_id = c.ref_id AND m.band = c.band AND m.method = c.method
                AND m.model_version = c.model_version)
"""


def night_counts(engine: sa.Engine, night: str) -> dict[str, int]:
    """The night's exposures by state and its co-adds, straight from the database.

    Keys: ``n_exposures``, ``n_done``, ``n_failed``, ``n_pending`` (registered or running),
    ``n_stale`` (exposures keeping rows of an earlier successful write), ``n_measurements``
    (rows of done exposures), ``n_stale_measurements``, ``n_coadds`` and ``n_coadds_partial``
    (co-adds of the sources measured that night).
    """
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text(_COUNTS), {"night": night}).mappings().one())
        counts.update(conn.execute(sa.text(_COADD_COUNTS), {"night": night}).mappings().one())
    return {k: int(v) for k, v in counts.items()}


def failure_message(engine: sa.Engine, night: str) -> str | None:
    """What is wrong with the night in the database now, or ``None`` when every exposure is done.

    Computed from ``lumos.exposures``, not from a report, so it is right whatever was rerun since.
    """
    counts = night_counts(engine, night)
    if counts["n_exposures"] == counts["n_done"]:
        return None
    with engine.connect() as conn:
        errors = conn.execute(sa.text(
            "SELECT object_key, status, coalesce(error, '') FROM lumos.exposures WHERE night = :night AND "
            "status <> 'done' ORDER BY expnum, ccd LIMIT 5"), {"night": night}).all()
    parts = [f"night {night}: {counts['n_exposures'] - counts['n_done']} of {counts['n_exposures']} exposures "
             f"not done ({counts['n_failed']} failed, {counts['n_pending']} not finished)"]
    if counts["n_stale"]:
        parts.append(f"{counts['n_stale']} keep {counts['n_stale_measurements']} measurements of an earlier "
                     "successful write (stale; co-adds built on them are partial)")
    parts += [f"{key} [{status}]: {error}" if not error.startswith(key) else f"[{status}] {error}"
              for key, status, error in errors]
    parts.append("fix the files and clear their mapped 'process' tasks; co-adds and the report follow")
    return "; ".join(parts)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _plots(exposures: pd.DataFrame, snr: pd.DataFrame, coadds: pd.DataFrame, night: str) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    out: dict[str, bytes] = {}
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    done = exposures[exposures["status"] == "done"]
    labels = [f"{e}/{c}" for e, c in zip(done["expnum"], done["ccd"])]
    bottom = np.zeros(len(done))
    for column in ("download_s", "measure_s", "write_s"):
        values = done[column].fillna(0.0).to_numpy(dtype=float)
        ax.bar(np.arange(len(done)), values, bottom=bottom, label=column.removesuffix("_s"))
        bottom += values
    ax.set_xticks(np.arange(len(done)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("seconds")
    ax.set_title(f"{night}: time per exposure/CCD")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out["timings.png"] = _png(fig)

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method, group in snr.groupby("method"):
        values = group["snr"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(np.clip(values, -5, 50), bins=40, histtype="step", label=str(method))
    ax.set_xlabel("flux / flux_err (clipped to [-5, 50])")
    ax.set_ylabel("measurements")
    ax.set_title(f"{night}: signal-to-noise")
    if len(snr):
        ax.legend(fontsize=7)
    fig.tight_layout()
    out["snr.png"] = _png(fig)

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    positive = coadds[coadds["flux_njy"] > 0]
    for method, group in positive.groupby("method"):
        mag = NJY_ZEROPOINT - 2.5 * np.log10(group["flux_njy"].to_numpy(dtype=float))
        ax.scatter(group["i_auto"], mag, s=4, label=str(method))
    ax.set_xlabel("catalogue i_auto (AB)")
    ax.set_ylabel("co-added narrow-band magnitude (AB)")
    ax.set_title(f"{night}: co-adds")
    if len(positive):
        ax.legend(fontsize=7)
    fig.tight_layout()
    out["coadds.png"] = _png(fig)
    return out


def run_found_exposures(engine: sa.Engine, night: str, run_id: int) -> int:
    """How many of ``night``'s exposures run ``run_id`` registered (found in the store) or measured;
    0 for a run that found nothing to do."""
    with engine.connect() as conn:
        return int(conn.execute(
            sa.text("SELECT count(*) FROM lumos.exposures WHERE night = :night "
                    "AND (run_id = :r OR measured_run_id = :r)"),
            {"night": night, "r": run_id},
        ).scalar_one())


def report_night(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    *,
    night: str,
    run_id: int,
    coadd: CoaddSummary | None = None,
    wall_s: float | None = None,
    extra_timings: Mapping[str, float] | None = None,
    plots: bool = True,
) -> NightReport:
    """Summarise a night from the database, close the run, then store the report objects.

    The run record is closed (``lumos.pipeline_runs.status``) before anything goes to object
    storage, so an unreachable store fails the report without leaving the run ``running``; a
    rerun of the report rewrites both from the database as it is then.

    Parameters
    ----------
    night : str
        ``YYYY-MM-DD``.
    run_id : int
        The provenance row, closed with the night's status.
    coadd : CoaddSummary, optional
        Result of the co-add step (its time is reported).
    wall_s : float, optional
        Wall time of the whole night (s), e.g. the DAG run's duration so far.
    extra_timings : mapping, optional
        More named timings (s) to report.
    plots : bool, keyword-only
        Render and store the PNG plots.

    Returns
    -------
    NightReport
    """
    with night_lock(engine, night, REPORT_LOCK):  # concurrent reports take turns: the last saw every write
        return _report(engine, store, config, night=night, run_id=run_id, coadd=coadd, wall_s=wall_s,
                       extra_timings=extra_timings, plots=plots)


def _report(engine: sa.Engine, store: ObjectStore, config: NightConfig, *, night: str, run_id: int,
            coadd: CoaddSummary | None, wall_s: float | None, extra_timings: Mapping[str, float] | None,
            plots: bool) -> NightReport:
    """:func:`report_night` without the lock."""
    with engine.connect() as conn:
        exposures = pd.DataFrame(conn.execute(
            sa.text("SELECT object_key, expnum, ccd, band, status, error, n_measurements, download_s, measure_s, "
                    "write_s FROM lumos.exposures WHERE night = :night ORDER BY expnum, ccd"),
            {"night": night},
        ).mappings().all(), columns=["object_key", "expnum", "ccd", "band", "status", "error", "n_measurements",
                                     "download_s", "measure_s", "write_s"])
        snr = pd.DataFrame(conn.execute(
            sa.text("SELECT m.method, m.flux / nullif(m.flux_err, 0) AS snr FROM lumos.measurements AS m "
                    "JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id WHERE e.night = :night"),
            {"night": night},
        ).mappings().all(), columns=["method", "snr"])
        coadds = pd.DataFrame(conn.execute(
            sa.text("SELECT c.method, c.flux_njy, s.i_auto FROM lumos.coadds AS c "
                    "JOIN lumos.catalog_sources AS s ON s.ref_id = c.ref_id WHERE c.run_id = :run_id"),
            {"run_id": run_id},
        ).mappings().all(), columns=["method", "flux_njy", "i_auto"])
    counts = night_counts(engine, night)
    found = run_found_exposures(engine, night, run_id)
    status = (night_status(counts["n_exposures"], counts["n_done"], counts["n_failed"] + counts["n_pending"])
              if found else "empty")
    kept = not found and counts["n_exposures"] > 0
    if kept:
        log.warning("night %s: run %d found none of the night's exposures in %s, but the database holds %d of "
                    "them from earlier runs: their measurements, co-adds and report are kept; check the store "
                    "location (--store / LUMOS_STORE_URL) and whether its files were moved", night, run_id,
                    store.describe(), counts["n_exposures"])
    timings: dict[str, float] = {}
    for column in ("download_s", "measure_s", "write_s"):
        timings[column] = float(exposures[column].fillna(0.0).astype(float).sum())
    if coadd is not None:
        timings["coadd_s"] = coadd.seconds
    timings.update(extra_timings or {})
    if wall_s is not None:
        timings["wall_s"] = float(wall_s)
    failures = tuple(
        (str(row.object_key), str(row.error)) for row in exposures[exposures["status"] != "done"].itertuples()
    )
    prefix = f"{config.report_prefix}/{night}"
    report = NightReport(night=night, run_id=run_id, status=status, failures=failures, timings=timings, objects=(),
                         **counts)
    finish_run(engine, run_id, status=status)
    if kept:
        log.info("%s", report.summary())
        return report
    objects = []
    if plots and counts["n_exposures"]:
        for name, data in _plots(exposures, snr, coadds, night).items():
            store.put_bytes(f"{prefix}/{name}", data, content_type="image/png")
            objects.append(f"{prefix}/{name}")
    objects.append(f"{prefix}/summary.json")
    report = NightReport(**{**report.__dict__, "objects": tuple(objects)})
    payload = {**report.to_dict(), "coadd": coadd.to_dict() if coadd else None}
    store.put_bytes(f"{prefix}/summary.json", json.dumps(payload, indent=2, default=str).encode(),
                    content_type="application/json")
    if status == "empty":
        log.info("night %s: no exposures found: nothing to do", night)
    log.info("%s", report.summary())
    return report
