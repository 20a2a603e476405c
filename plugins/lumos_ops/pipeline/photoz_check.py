"""The periodic photo-z validation of the photometry database (paper §6.4).

For every photometry method with co-adds, :func:`check_photoz` reads the latest co-added
narrow-band fluxes of the catalogue sources that have a spectroscopic redshift, has
:func:`lumos_ops.photoz.coadd_check.check_method` fit template photo-z to them and compare them
with it, and records the result:

* one row per method in ``lumos.photoz_checks`` (sigma68, NMAD, outlier fraction and bias of
  ``dz = (z_phot - z_spec) / (1 + z_spec)``, plus the per-i_auto-bin table as JSON);
* ``<report_prefix>/photoz/<stamp>/<method>.json`` and ``.png`` in object storage.

A drift of these numbers between checks is the survey-level symptom of a photometry regression
(a new model version, a calibration change). Runs without Airflow; the ``lumos_photoz_validation``
DAG only calls it.

A check never reports success on nothing. A method whose co-adds cover fewer than
``min_survey_bands`` bands (:data:`~lumos_ops.photoz.coadd_check.MIN_SURVEY_BANDS`) is not fitted (status ``too_few_bands``), and
one where no source gets a photo-z is not scored (status ``none_fitted``); neither gets a row in
``lumos.photoz_checks`` (its JSON report says why). :func:`require_checked` turns the results into
the outcome of the check: :class:`PhotozCheckSkipped` when there is nothing to validate yet,
:class:`PhotozCheckFailed` when a method should have been validated and was not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lumos_ops.exceptions import LumosError, LumosValueError
from lumos_ops.photoz.coadd_check import CHECKED, MIN_SURVEY_BANDS, NONE_FITTED, STATUSES, MethodPhotoz
from lumos_ops.pipeline.storage import ObjectStore

__all__ = [
    "PhotozCheck",
    "PhotozCheckError",
    "PhotozCheckFailed",
    "PhotozCheckSkipped",
    "check_photoz",
    "load_coadds_with_redshifts",
    "require_checked",
]

log = logging.getLogger(__name__)

_QUERY = sa.text(
    """
    SELECT c.ref_id, c.band, c.method, c.model_version, c.flux_njy, c.flux_err_njy, s.zspec, s.i_auto
    FROM lumos.latest_coadds AS c
    JOIN lumos.catalog_sources AS s USING (ref_id)
    WHERE s.zspec IS NOT NULL AND c.flux_njy IS NOT NULL AND c.flux_err_njy > 0
    """
)

_INSERT = sa.text(
    "INSERT INTO lumos.photoz_checks (dag_run_id, method, model_versions, n_sources, n_fitted, "
    "n_bands_median, sigma68, nmad, outlier_fraction, bias, outlier_threshold, metrics, report_key) "
    "VALUES (:dag_run_id, :method, :model_versions, :n_sources, :n_fitted, :n_bands_median, :sigma68, "
    ":nmad, :outlier_fraction, :bias, :outlier_threshold, CAST(:metrics AS jsonb), :report_key)"
)

class PhotozCheckError(LumosError, RuntimeError):
    """A photo-z check validated nothing it should have; the message names the counts and the fix.

    Attributes
    ----------
    results : list of PhotozCheck
        Every method's result (those with status ``checked`` are recorded).
    """

    def __init__(self, message: str, results: Sequence[PhotozCheck] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class PhotozCheckSkipped(PhotozCheckError):
    """Nothing to validate yet: no co-add of a source with a spectroscopic redshift, or no method's
    co-adds cover ``min_survey_bands`` bands."""


class PhotozCheckFailed(PhotozCheckError):
    """A method's co-adds cover enough bands but no source got a photo-z."""


@dataclasses.dataclass(frozen=True)
class PhotozCheck:
    """Result of one method's check (a row of ``lumos.photoz_checks`` when its status is ``checked``).

    Attributes
    ----------
    method : str
    model_versions : list of str
        Model versions of the co-adds used (the latest per source and band).
    n_sources : int
        Sources with a spectroscopic redshift and at least one co-added band.
    n_fitted : int
        Sources with at least ``min_bands`` bands, i.e. with a photo-z; the metrics are computed on them.
    n_bands_median : float
        Median number of co-added bands per source.
    sigma68, nmad, outlier_fraction, bias : float
        Of dz over the fitted sources (NaN when none).
    report_key : str or None
        Object-store key of the JSON report.
    n_bands : int
        Bands covered by the method's co-adds (any source).
    status : str
        ``checked`` (recorded in ``lumos.photoz_checks``), ``too_few_bands`` (fewer than
        ``min_survey_bands`` bands: not fitted) or ``none_fitted`` (no source got a photo-z).
    reason : str or None
        Why the method was not checked, with the counts and the fix; None when checked.
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
    n_bands: int = 0
    status: str = CHECKED
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise LumosValueError(f"PhotozCheck.status must be one of {STATUSES}, got {self.status!r}")

    @property
    def checked(self) -> bool:
        """Whether the metrics were computed and recorded."""
        return self.status == CHECKED

    def summary(self) -> str:
        """One line: the metrics and the rows they were computed on, or why there are none."""
        if not self.checked:
            return f"{self.method}: not checked ({self.status}): {self.reason}"
        return (f"{self.method}: sigma68 {self.sigma68:.4f}, NMAD {self.nmad:.4f}, outliers "
                f"{self.outlier_fraction:.3f}, bias {self.bias:+.4f}; computed on {self.n_fitted} sources "
                f"({self.n_bands} bands) of {self.n_sources} with a spectroscopic redshift "
                f"({', '.join(self.model_versions)})")

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
    min_survey_bands: int = MIN_SURVEY_BANDS,
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
        Fewest co-added bands for a source's photo-z (sources with fewer get none and are not
        scored; 3, the fit's default).
    min_survey_bands : int, keyword-only
        Fewest bands a method's co-adds must cover (any source) to be fitted and recorded
        (default :data:`~lumos_ops.photoz.coadd_check.MIN_SURVEY_BANDS`, 10; a PAUS-like survey has 40). Methods with fewer get
        status ``too_few_bands``.
    outlier_threshold : float, keyword-only
        ``|dz|`` above which a source is an outlier (0.02, the PAUS narrow-band value).
    now : datetime, keyword-only
        Time stamp of the report keys (default: now, UTC).
    grid : TemplateGrid, keyword-only
        Template grid (default :func:`lumos_ops.photoz.templates.build_template_grid`).

    Returns
    -------
    list of PhotozCheck
        One per method, in name order; empty when no co-add has a spectroscopic redshift. Only
        those with status ``checked`` have a row in ``lumos.photoz_checks``; every method has a
        JSON report (with ``status`` and ``reason``). Pass the list to :func:`require_checked`
        to turn "nothing validated" into an error.
    """
    from lumos_ops.photoz.coadd_check import check_method
    from lumos_ops.photoz.templates import build_template_grid

    if int(min_bands) != min_bands or min_bands < 1:
        raise LumosValueError(f"min_bands must be an integer >= 1, got {min_bands!r}")
    if int(min_survey_bands) != min_survey_bands or min_survey_bands < 1:
        raise LumosValueError(f"min_survey_bands must be an integer >= 1, got {min_survey_bands!r}")
    frame = load_coadds_with_redshifts(engine, methods)
    if frame.empty:
        log.info("photo-z check: no co-adds of sources with a spectroscopic redshift; nothing to do")
        return []
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    truth = frame.drop_duplicates("ref_id").set_index("ref_id")[["zspec", "i_auto"]]
    templates = grid if grid is not None else functools.cache(build_template_grid)
    results: list[PhotozCheck] = []
    rows: list[dict[str, Any]] = []
    for method in sorted(frame["method"].unique()):
        part = frame[frame["method"] == method]
        checked = check_method(str(method), part, truth, grid=templates, min_bands=min_bands,
                               min_survey_bands=min_survey_bands, outlier_threshold=outlier_threshold)
        versions = sorted(part["model_version"].astype(str).unique())
        key = f"{report_prefix.rstrip('/')}/photoz/{stamp}/{method}.json"
        metrics = _store_report(store, key, checked, versions=versions, dag_run_id=dag_run_id, stamp=stamp,
                                min_bands=min_bands, min_survey_bands=min_survey_bands,
                                outlier_threshold=outlier_threshold)
        overall = checked.overall
        result = PhotozCheck(
            method=str(method), model_versions=versions, n_sources=checked.n_sources,
            n_fitted=int(checked.fitted.sum()), n_bands_median=float(np.median(checked.bands_per_source)),
            sigma68=float(overall["sigma68"]), nmad=float(overall["nmad"]),
            outlier_fraction=float(overall["outlier_fraction"]), bias=float(overall["bias"]), report_key=key,
            n_bands=len(checked.bands), status=checked.status, reason=checked.reason,
        )
        results.append(result)
        if result.checked:
            rows.append({"dag_run_id": dag_run_id, "method": result.method, "model_versions": versions,
                         "n_sources": result.n_sources, "n_fitted": result.n_fitted,
                         "n_bands_median": result.n_bands_median, "sigma68": result.sigma68, "nmad": result.nmad,
                         "outlier_fraction": result.outlier_fraction, "bias": result.bias,
                         "outlier_threshold": outlier_threshold, "metrics": json.dumps(metrics), "report_key": key})
            log.info("photo-z check %s", result.summary())
        else:
            log.warning("photo-z check %s", result.summary())
    if rows:
        with engine.begin() as conn:
            conn.execute(_INSERT, rows)
    return results


def _store_report(store: ObjectStore, key: str, checked: MethodPhotoz, *, versions: list[str], dag_run_id: str,
                  stamp: str, min_bands: int, min_survey_bands: int, outlier_threshold: float) -> list[dict[str, Any]]:
    """Write the method's JSON report (and its PNG when a source was fitted) to ``key``; its per-bin metrics."""
    from lumos_ops.photoz.report import json_safe, plot_photoz

    fitted = checked.fitted
    metrics = [{k: json_safe(v) for k, v in r.items()} for r in checked.table.to_dict(orient="records")]
    report = {"method": checked.method, "model_versions": versions, "dag_run_id": dag_run_id, "checked_at": stamp,
              "status": checked.status, "reason": checked.reason, "n_sources": checked.n_sources,
              "n_fitted": int(fitted.sum()), "n_bands": len(checked.bands), "min_bands": min_bands,
              "min_survey_bands": min_survey_bands, "bands": list(checked.bands),
              "outlier_threshold": outlier_threshold,
              "overall": {k: json_safe(v) for k, v in checked.overall.items()}, "metrics": metrics}
    store.put_bytes(key, (json.dumps(report, indent=2) + "\n").encode(), content_type="application/json")
    if fitted.any():
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "photoz.png"
            plot_photoz(checked.z_phot[fitted], checked.z_spec[fitted], checked.table, png,
                        outlier_threshold=outlier_threshold)
            store.put_file(key.removesuffix(".json") + ".png", png)
    return metrics


def require_checked(results: Sequence[PhotozCheck]) -> list[PhotozCheck]:
    """The checked results of :func:`check_photoz`, or an error saying why nothing was validated.

    Parameters
    ----------
    results : sequence of PhotozCheck
        What :func:`check_photoz` returned.

    Returns
    -------
    list of PhotozCheck
        The methods with status ``checked`` (at least one); methods with too few bands next to
        checked ones are left out (their ``reason`` says why).

    Raises
    ------
    PhotozCheckFailed
        A method's co-adds cover enough bands but no source got a photo-z (the message names each
        such method with n_sources, n_bands and n_fitted).
    PhotozCheckSkipped
        No co-add of a source with a spectroscopic redshift, or no method covers enough bands.
    """
    failed = [r for r in results if r.status == NONE_FITTED]
    if failed:
        raise PhotozCheckFailed("photo-z check failed: " + "; ".join(f"{r.method}: {r.reason}" for r in failed),
                                results)
    checked = [r for r in results if r.checked]
    if not results:
        raise PhotozCheckSkipped(
            "photo-z check skipped: no co-add of a catalogue source with a spectroscopic redshift (n_sources=0); "
            "give the catalogue (LUMOS_CATALOG_KEY) a zspec column and process nights with lumos_nightly first",
            results)
    if not checked:
        raise PhotozCheckSkipped("photo-z check skipped: " + "; ".join(f"{r.method}: {r.reason}" for r in results),
                                 results)
    return checked
