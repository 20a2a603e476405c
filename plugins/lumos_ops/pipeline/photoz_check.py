"""The periodic photo-z validation of the photometry database (paper §6.4).

For every photometry method with co-adds, :func:`check_photoz` fits template photo-z
(:func:`lumos_ops.photoz.fit.fit_photoz`) to the latest co-added narrow-band fluxes of the catalogue
sources that have a spectroscopic redshift, compares them with it, and records the result:

* one row per method in ``lumos.photoz_checks`` (sigma68, NMAD, outlier fraction and bias of
  ``dz = (z_phot - z_spec) / (1 + z_spec)``, plus the per-i_auto-bin table as JSON);
* ``<report_prefix>/photoz/<stamp>/<method>.json`` and ``.png`` in object storage.

A drift of these numbers between checks is the survey-level symptom of a photometry regression
(a new model version, a calibration change). Runs without Airflow; the ``lumos_photoz_validation``
DAG only calls it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lumos_ops.exceptions import LumosValueError
from lumos_ops.pipeline.storage import ObjectStore

__all__ = ["PhotozCheck", "check_photoz", "load_coadds_with_redshifts"]

log = logging.getLogger(__name__)

_QUERY = sa.text(
    """
    SELECT c.ref_id, c.band, c.method, c.model_version, c.flux_njy, c.flux_err_njy, s.zspec, s.i_auto
    FROM lumos.latest_coadds AS c
    JOIN lumos.catalog_sources AS s USING (ref_id)
    WHERE s.zspec IS NOT NULL AND c.flux_njy IS NOT NULL AND c.flux_err_njy > 0
    """
)


@dataclasses.dataclass(frozen=True)
class PhotozCheck:
    """Result of one method's check (a row of ``lumos.photoz_checks``).

    Attributes
    ----------
    method : str
    model_versions : list of str
        Model versions of the co-adds used (the latest per source and band).
    n_sources : int
        Sources with a spectroscopic redshift and at least one co-added band.
    n_fitted : int
        Sources with at least ``min_bands`` bands, i.e. with a photo-z.
    n_bands_median : float
    sigma68, nmad, outlier_fraction, bias : float
        Of dz over the fitted sources (NaN when none).
    report_key : str or None
        Object-store key of the JSON report.
    """

    method: str
    model_versions: list[str]
    n_sources: int
    n_fitted: int
    n_bands_median: float
    sigma68: float
    nmad: float
    outlier_fraction: float
    bias: float
    report_key: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (NaN as None)."""
        from lumos_ops.photoz.report import json_safe

        return {k: json_safe(v) for k, v in dataclasses.asdict(self).items()}


def load_coadds_with_redshifts(engine: sa.Engine, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Latest co-adds (nJy) of the catalogue sources with a spectroscopic redshift, one row per
    source, band and method, with ``zspec`` and ``i_auto``; restricted to ``methods`` when given."""
    with engine.connect() as conn:
        frame = pd.read_sql(_QUERY, conn)
    if methods is not None:
        frame = frame[frame["method"].isin(list(methods))]
    return frame.reset_index(drop=True)


def check_photoz(
    engine: sa.Engine,
    store: ObjectStore,
    *,
    dag_run_id: str,
    report_prefix: str = "reports",
    methods: Sequence[str] | None = None,
    min_bands: int = 3,
    outlier_threshold: float = 0.02,
    now: dt.datetime | None = None,
    grid: Any | None = None,
) -> list[PhotozCheck]:
    """Validate the photo-z of every method's latest co-adds; record and return the results.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The photometry database (schema version >= 3).
    store : ObjectStore
        Receives the JSON and PNG reports.
    dag_run_id : str, keyword-only
        Provenance recorded with each row.
    report_prefix : str, keyword-only
        Object-store prefix of the reports.
    methods : sequence of str, keyword-only
        Methods to check (default every method with co-adds).
    min_bands : int, keyword-only
        Fewest co-added bands for a photo-z (sources with fewer get none and are not scored).
    outlier_threshold : float, keyword-only
        ``|dz|`` above which a source is an outlier (0.02, the PAUS narrow-band value).
    now : datetime, keyword-only
        Time stamp of the report keys (default: now, UTC).
    grid : TemplateGrid, keyword-only
        Template grid (default :func:`lumos_ops.photoz.templates.build_template_grid`).

    Returns
    -------
    list of PhotozCheck
        One per method, in name order; empty when no co-add has a spectroscopic redshift.
    """
    from lumos_ops.photoz.fit import PhotozConfig, fit_photoz
    from lumos_ops.photoz.metrics import binned_photoz_metrics, photoz_metrics
    from lumos_ops.photoz.report import json_safe, plot_photoz
    from lumos_ops.photoz.tables import pivot_coadds
    from lumos_ops.photoz.templates import build_template_grid

    if min_bands < 1:
        raise LumosValueError(f"min_bands must be >= 1, got {min_bands}")
    frame = load_coadds_with_redshifts(engine, methods)
    if frame.empty:
        log.info("photo-z check: no co-adds of sources with a spectroscopic redshift; nothing to do")
        return []
    grid = grid or build_template_grid()
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    truth = frame.drop_duplicates("ref_id").set_index("ref_id")[["zspec", "i_auto"]]
    results: list[PhotozCheck] = []
    rows: list[dict[str, Any]] = []
    for method in sorted(frame["method"].unique()):
        part = frame[frame["method"] == method]
        wide = pivot_coadds(part.drop(columns=["method"]), source=f"lumos.latest_coadds[{method}]")
        n_bands = np.isfinite(wide.flux).sum(axis=1)
        z_spec = truth.loc[wide.ref_id, "zspec"].to_numpy(np.float64)
        i_auto = truth.loc[wide.ref_id, "i_auto"].to_numpy(np.float64)
        fit = fit_photoz(wide.flux, wide.flux_err, grid=grid, bands=wide.bands,
                         config=PhotozConfig(min_bands=min_bands))
        z_phot = np.asarray(fit.z_mode, dtype=np.float64)
        overall = photoz_metrics(z_phot, z_spec, outlier_threshold=outlier_threshold)
        fitted = np.isfinite(z_phot)
        table = binned_photoz_metrics(z_phot[fitted], z_spec[fitted], i_auto[fitted], fractions=(1.0,),
                                      outlier_threshold=outlier_threshold) if fitted.any() else pd.DataFrame()
        metrics = [{k: json_safe(v) for k, v in r.items()} for r in table.to_dict(orient="records")]
        versions = sorted(part["model_version"].astype(str).unique())
        key = f"{report_prefix.rstrip('/')}/photoz/{stamp}/{method}.json"
        report = {"method": method, "model_versions": versions, "dag_run_id": dag_run_id, "checked_at": stamp,
                  "n_sources": int(len(wide.ref_id)), "n_fitted": int(fitted.sum()), "min_bands": min_bands,
                  "bands": list(wide.bands), "outlier_threshold": outlier_threshold,
                  "overall": {k: json_safe(v) for k, v in overall.items()}, "metrics": metrics}
        store.put_bytes(key, (json.dumps(report, indent=2) + "\n").encode(), content_type="application/json")
        if fitted.any():
            with tempfile.TemporaryDirectory() as tmp:
                png = Path(tmp) / "photoz.png"
                plot_photoz(z_phot[fitted], z_spec[fitted], table, png, outlier_threshold=outlier_threshold)
                store.put_file(key.removesuffix(".json") + ".png", png)
        result = PhotozCheck(
            method=str(method), model_versions=versions, n_sources=int(len(wide.ref_id)), n_fitted=int(fitted.sum()),
            n_bands_median=float(np.median(n_bands)), sigma68=float(overall["sigma68"]), nmad=float(overall["nmad"]),
            outlier_fraction=float(overall["outlier_fraction"]), bias=float(overall["bias"]), report_key=key,
        )
        results.append(result)
        rows.append({**result.to_dict(), "dag_run_id": dag_run_id,
                     "outlier_threshold": outlier_threshold, "metrics": json.dumps(metrics)})
        log.info("photo-z check %s: %d of %d sources fitted, sigma68 %.4f, outliers %.3f", method, result.n_fitted,
                 result.n_sources, result.sigma68, result.outlier_fraction)
    insert = sa.text(
        "INSERT INTO lumos.photoz_checks (dag_run_id, method, model_versions, n_sources, n_fitted, n_bands_median, "
        "sigma68, nmad, outlier_fraction, bias, outlier_threshold, metrics, report_key) VALUES (:dag_run_id, :method, "
        ":model_versions, :n_sources, :n_fitted, :n_bands_median, :sigma68, :nmad, :outlier_fraction, :bias, "
        ":outlier_threshold, CAST(:metrics AS jsonb), :report_key)"
    )
    with engine.begin() as conn:
        conn.execute(insert, rows)
    return results
