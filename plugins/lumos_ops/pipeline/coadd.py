"""Co-add every source touched in a night across all of its measured exposures, in the database.

Point estimates use the inverse-variance weighted mean of eq. (21) of Cabayol et al. (2021) on
calibrated fluxes (nJy, ``f_nJy = f * 10**(-0.4 * (ZP - 31.4))``): one ``INSERT ... SELECT ...
ON CONFLICT DO UPDATE`` per night, so reruns replace co-adds. The weights are the errors before the
survey's error floor (``extras.flux_err_stat``), and the floor's part of each error
(``sqrt(flux_err² - flux_err_stat²)``), which every exposure shares, is added once: the co-add's
variance is ``1 / Σ w + (Σ w a / Σ w)²`` (:func:`lumos_ops.photometry.error_floor.coadd_with_floor`). For LUMOS rows (Gaussian-mixture
likelihoods stored with the measurement) the co-add is the product of the likelihoods
(``lumos_ops.lumos.coadd.coadd_likelihoods``, no prior, widened by the error the exposures share:
the model's recorded term where its rows carry ``shared_rho``, at least the error floor's
``floor_rho``): its median and 68 % half-width replace
``flux_njy``/``flux_err_njy`` and its median, peak, sigma68, sigma95 and eta are stored.
A co-add is ``partial`` when an exposure of that night in that band (or of unknown band) failed,
or when it includes stale rows: measurements kept from an earlier successful write of an exposure
whose latest attempt failed (``n_stale`` counts those the co-add uses, not the flagged ones it leaves
out; failures never delete measurements).

Co-adds are computed under one transaction-level advisory lock, so concurrent runs (two runs of a
night, an exposure rerun while the night is co-added) take turns and the last one sees every row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import sqlalchemy as sa

from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.flags import Flag
from lumos_ops.pipeline.plan import CoaddSummary

__all__ = ["DEFAULT_EXCLUDE_FLAGS", "coadd_night"]

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE_FLAGS: int = int(Flag.OFF_IMAGE | Flag.SATURATED | Flag.FIT_FAILED)
"""Measurements with any of these flag bits are left out of co-adds."""

_LOCK_ID = 0x4C554D43  # "LUMC": serialises co-add transactions

_TOUCHED = """
    SELECT DISTINCT m.ref_id, m.band, m.method, m.model_version
    FROM lumos.measurements AS m JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id
    WHERE e.night = :night
      AND (CAST(:every_version AS boolean) OR (m.method, m.model_version) IN
           (SELECT * FROM unnest(CAST(:methods AS text[]), CAST(:versions AS text[]))))
"""

_POINT_COADD = """
WITH touched AS (""" + _TOUCHED + """),
obs AS (
    SELECT m.ref_id, m.band, m.method, m.model_version, m.flag, e.night, e.status <> 'done' AS stale,
           m.flux * power(10.0, -0.4 * (e.zero_point - :njy_zp)) AS f,
           coalesce((m.extras ->> 'flux_err_stat')::double precision, m.flux_err)
               * power(10.0, -0.4 * (e.zero_point - :njy_zp)) AS s,
           sqrt(greatest(power(m.flux_err, 2)
                         - power(coalesce((m.extras ->> 'flux_err_stat')::double precision, m.flux_err), 2), 0.0))
               * power(10.0, -0.4 * (e.zero_point - :njy_zp)) AS a
    FROM touched AS t
    JOIN lumos.measurements AS m
      ON m.ref_id = t.ref_id AND m.band = t.band AND m.method = t.method AND m.model_version = t.model_version
    JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id
),
usable AS (
    SELECT *, (f IS NOT NULL AND s > 0 AND (flag & :exclude) = 0) AS ok FROM obs
),
agg AS (
    SELECT ref_id, band, method, model_version,
           count(*) AS n_exposures,
           count(*) FILTER (WHERE ok) AS n_used,
           count(*) FILTER (WHERE stale AND ok) AS n_stale,
           sum(1.0 / (s * s)) FILTER (WHERE ok) AS sw,
           sum(f / (s * s)) FILTER (WHERE ok) AS swf,
           sum(f * f / (s * s)) FILTER (WHERE ok) AS swff,
           coalesce(sum(a / (s * s)) FILTER (WHERE ok), 0.0) AS swa,
           coalesce(bit_or(flag) FILTER (WHERE ok), bit_or(flag)) AS flag,
           max(night) AS last_night
    FROM usable GROUP BY ref_id, band, method, model_version
),
failed AS (
    SELECT band FROM lumos.exposures WHERE night = :night AND status = 'failed'
)
INSERT INTO lumos.coadds AS c (ref_id, band, method, model_version, run_id, n_exposures, n_used, flux_njy,
                               flux_err_njy, flux_median_njy, flux_peak_njy, sigma68_njy, sigma95_njy, eta,
                               chi2_dof, flag, partial, last_night, updated_at, n_stale)
SELECT ref_id, band, method, model_version, :run_id, n_exposures, n_used,
       swf / sw, sqrt(1.0 / sw + power(swa / sw, 2)), NULL, NULL, NULL, NULL, NULL,
       CASE WHEN n_used > 1 THEN greatest(swff - swf * swf / sw, 0.0) / (n_used - 1) END,
       flag,
       n_stale > 0 OR EXISTS (SELECT 1 FROM failed WHERE failed.band IS NULL OR failed.band = agg.band),
       last_night, now(), n_stale
FROM agg
ON CONFLICT (ref_id, band, method, model_version) DO UPDATE SET
    run_id = EXCLUDED.run_id, n_exposures = EXCLUDED.n_exposures, n_used = EXCLUDED.n_used,
    flux_njy = EXCLUDED.flux_njy, flux_err_njy = EXCLUDED.flux_err_njy,
    flux_median_njy = NULL, flux_peak_njy = NULL, sigma68_njy = NULL, sigma95_njy = NULL, eta = NULL,
    chi2_dof = EXCLUDED.chi2_dof, flag = EXCLUDED.flag, partial = EXCLUDED.partial,
    last_night = greatest(c.last_night, EXCLUDED.last_night), updated_at = now(), n_stale = EXCLUDED.n_stale,
    n_outliers = NULL
"""

_PDF_ROWS = """
SELECT m.ref_id, m.band, m.method, m.model_version, m.mix_alpha, m.mix_mu, m.mix_sigma, m.mix_truncated, e.zero_point,
       (m.extras ->> 'shared_rho')::double precision AS shared_rho,
       (m.extras ->> 'floor_rho')::double precision AS floor_rho,
       (m.extras ->> 'model_residual')::double precision AS model_residual,
       m.extras -> 'shared_rho_bins' AS shared_rho_bins, m.extras -> 'shared_residual_cuts' AS shared_residual_cuts
FROM lumos.measurements AS m JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id
WHERE m.mix_alpha IS NOT NULL AND e.zero_point IS NOT NULL AND (m.flag & :exclude) = 0
  AND (m.ref_id, m.band, m.method, m.model_version) IN (""" + _TOUCHED + """)
ORDER BY m.ref_id, m.band, m.method, m.model_version
"""


def coadd_night(engine: sa.Engine, *, night: str, run_id: int, exclude_flags: int = DEFAULT_EXCLUDE_FLAGS,
                outlier_fraction: float = 0.0, versions: Mapping[str, str] | None = None) -> CoaddSummary:
    """Recompute the co-adds of every (source, band, method, model version) measured in ``night``.

    Every stored measurement of those sources counts, whatever night it comes from; rows of
    exposures whose latest attempt did not succeed count too, and those used are counted in ``n_stale``.

    Parameters
    ----------
    night : str
        ``YYYY-MM-DD``.
    run_id : int
        Provenance row recorded on each co-add.
    exclude_flags : int, keyword-only
        Flag bits whose measurements are not co-added.
    outlier_fraction : float, keyword-only
        The LUMOS co-adds' prior probability of a bad exposure (the survey's
        ``coadd_outlier_fraction``; :func:`lumos_ops.lumos.coadd.coadd_likelihoods`); 0: the plain
        product. Column ``n_outliers`` counts the exposures each co-add discounted.
    versions : mapping of method to model version, keyword-only
        Only these (method, version) pairs (a reprocessing run: the other versions' co-adds and their
        provenance stay as they are); None: every version measured in the night.

    Returns
    -------
    CoaddSummary
    """
    start = time.perf_counter()
    params = {"night": night, "run_id": run_id, "njy_zp": NJY_ZEROPOINT, "exclude": int(exclude_flags),
              "every_version": versions is None, "methods": list(versions or {}),
              "versions": list((versions or {}).values())}
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        n_coadds = conn.execute(sa.text(_POINT_COADD), params).rowcount
        pdf_coadds = _pdf_coadds(conn, params, outlier_fraction)
        counts = conn.execute(
            sa.text(
                "SELECT count(DISTINCT c.ref_id), count(*) FILTER (WHERE c.partial), "
                "count(*) FILTER (WHERE c.n_stale > 0) FROM lumos.coadds AS c "
                "WHERE c.run_id = :run_id AND EXISTS (SELECT 1 FROM lumos.measurements AS m JOIN lumos.exposures AS e "
                "ON e.exposure_id = m.exposure_id WHERE e.night = :night AND m.ref_id = c.ref_id AND m.band = c.band)"
            ),
            params,
        ).one()
    return CoaddSummary(night=night, n_sources=int(counts[0]), n_coadds=int(n_coadds), n_partial=int(counts[1]),
                        pdf_coadds=pdf_coadds, seconds=time.perf_counter() - start, n_stale=int(counts[2]))


def _pdf_coadds(conn: sa.Connection, params: dict[str, object], outlier_fraction: float = 0.0) -> int:
    """Co-add LUMOS likelihoods with ``lumos_ops.lumos.coadd.coadd_likelihoods``; return rows updated.

    One batched computation for every (source, band, model version) of the night. The per-exposure
    mixtures of a reference-prior model are likelihoods, so their product is the co-added
    likelihood (no prior: photo-z wants likelihoods), widened for the error the exposures share
    where the model records one (each row's ``extras.shared_rho``, or with a residual axis the
    ``shared_rho_bins`` entry of the source's median ``model_residual``:
    :func:`lumos_ops.lumos.shared_error.coadd_rho`), each exposure's likelihood given the weight
    ``outlier_fraction`` of a bad exposure (``n_outliers``: the exposures it discounted).
    ``flux_njy``/``flux_err_njy`` become its
    median and 68 % half-width; ``flux_median_njy``, ``flux_peak_njy``, ``sigma68_njy``,
    ``sigma95_njy`` and ``eta`` (eq. 22) summarise the same PDF. ``chi2_dof`` keeps the eq. (21)
    consistency of the per-exposure fluxes.
    """
    rows = conn.execute(sa.text(_PDF_ROWS), params).all()
    if not rows:
        return 0
    import pandas as pd

    from lumos_ops.lumos.coadd import coadd_likelihoods, pack_groups
    from lumos_ops.lumos.mixture_table import mixtures_from_arrays
    from lumos_ops.lumos.shared_error import coadd_rho

    keys = ("ref_id", "band", "method", "model_version")
    frame = pd.DataFrame(rows, columns=list(rows[0]._fields))
    mixtures = mixtures_from_arrays(frame["mix_alpha"], frame["mix_mu"], frame["mix_sigma"], frame["mix_truncated"])
    frame["shared_rho"] = coadd_rho(frame, frame.groupby(list(keys), sort=False).ngroup().to_numpy())
    packed = pack_groups(frame, mixtures, by=keys)
    result = coadd_likelihoods(packed.alpha, packed.mu, packed.sigma, packed.zero_point, valid=packed.valid,
                               truncated=packed.truncated, rho=packed.shared_rho, outlier_fraction=outlier_fraction)
    update = packed.keys.copy()
    update["ref_id"] = update["ref_id"].astype("int64")
    for name in ("median", "mode", "sigma68", "sigma95", "eta"):
        update[name] = result.stats[name]
    update["n_outliers"] = result.n_outliers
    records = [
        {**{k: row[k] for k in keys}, **{k: _finite(row[k]) for k in ("median", "mode", "sigma68", "sigma95", "eta")},
         "n_outliers": int(row["n_outliers"])}
        for row in update.to_dict("records")
    ]
    conn.execute(sa.text(
        "CREATE TEMP TABLE coadd_pdf_update (ref_id bigint, band text, method text, model_version text, "
        "median double precision, mode double precision, sigma68 double precision, sigma95 double precision, "
        "eta double precision, n_outliers integer) ON COMMIT DROP"
    ))
    conn.execute(sa.text(
        "INSERT INTO coadd_pdf_update VALUES (:ref_id, :band, :method, :model_version, :median, :mode, :sigma68, "
        ":sigma95, :eta, :n_outliers)"
    ), records)
    conn.execute(sa.text(
        "UPDATE lumos.coadds AS c SET flux_njy = u.median, flux_err_njy = u.sigma68, flux_median_njy = u.median, "
        "flux_peak_njy = u.mode, sigma68_njy = u.sigma68, sigma95_njy = u.sigma95, eta = u.eta, "
        "n_outliers = u.n_outliers "
        "FROM coadd_pdf_update AS u WHERE c.ref_id = u.ref_id AND c.band = u.band AND c.method = u.method "
        "AND c.model_version = u.model_version"
    ))
    return len(records)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
