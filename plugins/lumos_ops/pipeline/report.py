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
from lumos_ops.pipeline.plan import CoaddSummary, NightReport
from lumos_ops.pipeline.storage import ObjectStore
from lumos_ops.pipeline.writer import finish_run

__all__ = ["night_status", "report_night"]

log = logging.getLogger(__name__)


def night_status(n_exposures: int, n_done: int, n_failed: int) -> str:
    """``empty`` (nothing to do), ``success``, ``partial`` (some failed) or ``failed`` (none done)."""
    if n_exposures == 0:
        return "empty"
    if n_failed == 0 and n_done == n_exposures:
        return "success"
    return "partial" if n_done else "failed"


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
    """Summarise a night from the database, store the report objects and close the run.

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
    n_exposures = len(exposures)
    n_done = int((exposures["status"] == "done").sum())
    n_failed = int((exposures["status"] == "failed").sum())
    status = night_status(n_exposures, n_done, n_failed)
    timings: dict[str, float] = {}
    for column in ("download_s", "measure_s", "write_s"):
        timings[column] = float(exposures[column].fillna(0.0).astype(float).sum())
    if coadd is not None:
        timings["coadd_s"] = coadd.seconds
    timings.update(extra_timings or {})
    if wall_s is not None:
        timings["wall_s"] = float(wall_s)
    failures = tuple(
        (str(row.object_key), str(row.error)) for row in exposures[exposures["status"] == "failed"].itertuples()
    )
    prefix = f"{config.report_prefix}/{night}"
    report = NightReport(
        night=night, run_id=run_id, status=status, n_exposures=n_exposures, n_done=n_done, n_failed=n_failed,
        n_measurements=int(exposures["n_measurements"].fillna(0).astype(int).sum()),
        n_coadds=coadd.n_coadds if coadd is not None else 0, failures=failures, timings=timings, objects=(),
    )
    objects = []
    if plots and n_exposures:
        for name, data in _plots(exposures, snr, coadds, night).items():
            store.put_bytes(f"{prefix}/{name}", data, content_type="image/png")
            objects.append(f"{prefix}/{name}")
    objects.append(f"{prefix}/summary.json")
    report = NightReport(**{**report.__dict__, "objects": tuple(objects)})
    payload = {**report.to_dict(), "coadd": coadd.to_dict() if coadd else None}
    store.put_bytes(f"{prefix}/summary.json", json.dumps(payload, indent=2, default=str).encode(),
                    content_type="application/json")
    finish_run(engine, run_id, status=status)
    if status == "empty":
        log.info("night %s: no exposures found: nothing to do", night)
    log.info("%s", report.summary())
    return report
