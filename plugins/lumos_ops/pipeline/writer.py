"""Writes to the photometry database: runs, model versions, catalogue, exposures, measurements.

Measurements of one exposure are written with ``COPY`` into a temporary staging table; one
transaction then replaces the exposure's rows of those methods (``DELETE`` by primary-key prefix,
``INSERT ... SELECT`` from the staging table) and marks the exposure done. A rerun therefore
replaces rows instead of duplicating them (the primary key forbids duplicates anyway), readers see
the old rows until the commit, and a crash before the commit leaves nothing half-written. The
replace is an upsert without ``ON CONFLICT``: it also drops rows a rerun no longer produces and
never depends on planner statistics of the freshly grown table. Every statement is parameterised.

Nothing else deletes measurements: a failed or interrupted attempt (:func:`mark_failed`,
:func:`recover_interrupted`) records the error and leaves the rows of the last successful write in
place, marked stale by the ``lumos.exposure_rows`` view until a later success replaces them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lumos_ops.exceptions import DatabaseError, LumosValueError

__all__ = [
    "MIXTURE_COLUMNS",
    "ModelVersion",
    "ExposureMeta",
    "start_run",
    "finish_run",
    "register_model_versions",
    "load_catalog",
    "register_exposures",
    "mark_running",
    "mark_failed",
    "recover_interrupted",
    "INTERRUPTED_ERROR",
    "write_measurements",
]

MIXTURE_COLUMNS: tuple[str, ...] = ("mix_alpha", "mix_mu", "mix_sigma")
"""Array columns of the LUMOS Gaussian mixture (weights, means and sigmas in e-/s)."""

_STAGING_COLUMNS: tuple[str, ...] = (
    "ref_id", "method", "model_version", "band", "x", "y", "flux", "flux_err", "flag",
    "mix_alpha", "mix_mu", "mix_sigma", "extras",
)
_MEASUREMENT_CORE = {"ref_id", "method", "band", "x", "y", "flux", "flux_err", "flag", "extras", "model_version"}


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """A row of the model registry (``lumos.model_versions``)."""

    model_version: str
    method: str
    kind: str = "classical"
    checksum: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ExposureMeta:
    """Header values recorded with a measured exposure."""

    band: str
    epoch: int
    exptime: float
    psf_fwhm: float
    zero_point: float | None
    mjd: float | None
    nan_fraction: float
    checksum: str | None = None
    size_bytes: int | None = None


def start_run(engine: sa.Engine, *, dag_id: str, dag_run_id: str, night: str, code_version: str,
              settings: Mapping[str, Any]) -> int:
    """Create (or reopen, for a cleared task of the same DAG run) the provenance row; return ``run_id``."""
    with engine.begin() as conn:
        return int(conn.execute(
            sa.text(
                "INSERT INTO lumos.pipeline_runs (dag_id, dag_run_id, night, code_version, settings) "
                "VALUES (:dag_id, :dag_run_id, :night, :code_version, CAST(:settings AS jsonb)) "
                "ON CONFLICT (dag_id, dag_run_id, night) DO UPDATE SET status = 'running', finished_at = NULL, "
                "code_version = EXCLUDED.code_version, settings = EXCLUDED.settings RETURNING run_id"
            ),
            {"dag_id": dag_id, "dag_run_id": dag_run_id, "night": night, "code_version": code_version,
             "settings": json.dumps(dict(settings), sort_keys=True)},
        ).scalar_one())


def finish_run(engine: sa.Engine, run_id: int, *, status: str) -> None:
    """Close a run with ``status`` in success / partial / failed / empty."""
    if status not in ("success", "partial", "failed", "empty"):
        raise LumosValueError(f"status={status!r}: use success, partial, failed or empty")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE lumos.pipeline_runs SET status = :s, finished_at = now() WHERE run_id = :r"),
            {"s": status, "r": run_id},
        )


def register_model_versions(engine: sa.Engine, versions: Iterable[ModelVersion], *, overwrite: bool = True) -> None:
    """Insert the model versions; existing ones get the new checksum/metadata when ``overwrite``.

    ``overwrite=False`` is what the pipeline's writer role may do (it cannot UPDATE the registry):
    existing versions are left as they are.

    Raises
    ------
    DatabaseError
        A version string is already registered for another method, or (``overwrite=False``) with
        another checksum: a registered version names one set of weights for good.
    """
    rows = [
        {"v": m.model_version, "m": m.method, "k": m.kind, "c": m.checksum,
         "meta": json.dumps(dict(m.metadata), sort_keys=True, default=str)}
        for m in versions
    ]
    if not rows:
        return
    with engine.begin() as conn:
        for row in rows:
            existing = conn.execute(
                sa.text("SELECT method, checksum FROM lumos.model_versions WHERE model_version = :v"), {"v": row["v"]}
            ).one_or_none()
            if existing is None:
                continue
            if existing.method != row["m"]:
                raise DatabaseError(
                    f"model_version {row['v']!r} is registered for method {existing.method!r}, not {row['m']!r}; "
                    "give each method its own version string"
                )
            if not overwrite and None not in (existing.checksum, row["c"]) and existing.checksum != row["c"]:
                raise DatabaseError(
                    f"model_version {row['v']!r} is registered with checksum {existing.checksum[:12]}..., not "
                    f"{row['c'][:12]}...; a registered version names one set of weights: use a new version string"
                )
        conn.execute(
            sa.text(
                "INSERT INTO lumos.model_versions (model_version, method, kind, checksum, metadata) "
                "VALUES (:v, :m, :k, :c, CAST(:meta AS jsonb)) ON CONFLICT (model_version) "
                + ("DO UPDATE SET checksum = coalesce(EXCLUDED.checksum, lumos.model_versions.checksum), "
                   "metadata = EXCLUDED.metadata" if overwrite else "DO NOTHING")
            ),
            rows,
        )


def _copy(conn: sa.Connection, table: str, columns: Sequence[str], frame: pd.DataFrame) -> None:
    """``COPY table (columns) FROM STDIN`` of ``frame`` as CSV written by pyarrow (NaN/None -> NULL)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    buffer = io.BytesIO()
    pa_csv.write_csv(
        pa.Table.from_pandas(frame[list(columns)], preserve_index=False),
        buffer,
        write_options=pa_csv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    buffer.seek(0)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()


_CATALOG_COLUMNS = ("ref_id", "ra", "dec", "x", "y", "r50", "sersic_n", "q", "pa", "i_auto", "zspec")


def load_catalog(engine: sa.Engine, catalog: pd.DataFrame, *, checksum: str) -> int:
    """Upsert a validated catalogue (``lumos_ops.io.catalog.validate_catalog``) into ``lumos.catalog_sources``.

    Returns the number of rows written (0 when this catalogue version is already loaded).
    """
    with engine.begin() as conn:
        loaded = conn.execute(
            sa.text("SELECT count(*) FROM lumos.catalog_sources WHERE catalog_checksum = :c"), {"c": checksum}
        ).scalar_one()
        if loaded == len(catalog):
            return 0
        frame = pd.DataFrame({c: catalog[c] if c in catalog.columns else np.nan for c in _CATALOG_COLUMNS})
        frame["catalog_checksum"] = checksum
        conn.execute(sa.text(
            "CREATE TEMP TABLE lumos_catalog_staging (LIKE lumos.catalog_sources INCLUDING DEFAULTS) ON COMMIT DROP"
        ))
        columns = (*_CATALOG_COLUMNS, "catalog_checksum")
        _copy(conn, "lumos_catalog_staging", columns, frame[list(columns)])
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
        conn.execute(sa.text(
            f"INSERT INTO lumos.catalog_sources ({', '.join(columns)}) SELECT {', '.join(columns)} "
            f"FROM lumos_catalog_staging ON CONFLICT (ref_id) DO UPDATE SET {assignments}, loaded_at = now()"
        ))
    return len(frame)


def register_exposures(engine: sa.Engine, rows: Sequence[Mapping[str, Any]], *, run_id: int) -> list[int]:
    """Insert or refresh exposure rows; return their ``exposure_id`` in input order.

    Parameters
    ----------
    rows : sequence of mapping
        ``key``, ``night``, ``expnum``, ``ccd``, ``size`` (bytes) and ``checksum`` of each CCD image.
        An exposure already registered under the same key is reset to ``registered`` (its previous
        measurements stay until the new ones replace them).
    """
    ids = []
    with engine.begin() as conn:
        for row in rows:
            ids.append(int(conn.execute(
                sa.text(
                    "INSERT INTO lumos.exposures (object_key, checksum, size_bytes, night, expnum, ccd, run_id) "
                    "VALUES (:key, :checksum, :size, :night, :expnum, :ccd, :run_id) "
                    "ON CONFLICT (object_key) DO UPDATE SET checksum = EXCLUDED.checksum, "
                    "size_bytes = EXCLUDED.size_bytes, run_id = EXCLUDED.run_id, status = 'registered', "
                    "error = NULL, registered_at = now() RETURNING exposure_id"
                ),
                {"key": row["key"], "checksum": row["checksum"], "size": int(row["size"]), "night": row["night"],
                 "expnum": int(row["expnum"]), "ccd": int(row["ccd"]), "run_id": run_id},
            ).scalar_one()))
    return ids


def mark_running(engine: sa.Engine, exposure_id: int, *, run_id: int, worker: str | None = None) -> None:
    """Record that an exposure's task started (``worker``: ``host:pid`` of the task, for the operator).

    The exposure's stored measurements are untouched: they stay until a successful write replaces them.
    """
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE lumos.exposures SET status = 'running', run_id = :r, started_at = now(), "
                    "finished_at = NULL, error = NULL, attempts = attempts + 1, worker = :w WHERE exposure_id = :e"),
            {"r": run_id, "e": exposure_id, "w": worker},
        )


def mark_failed(engine: sa.Engine, exposure_id: int, *, run_id: int, error: str,
                timings: Mapping[str, float] | None = None, band: str | None = None) -> None:
    """Record a failed attempt at an exposure, with its error; never deletes anything.

    Measurements of an earlier successful write stay (they become stale, see the
    ``lumos.exposure_rows`` view) until a later success replaces them. ``band`` is recorded when
    the header could be read (co-adds of other bands stay complete).
    """
    timings = dict(timings or {})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE lumos.exposures SET status = 'failed', error = :err, run_id = :r, finished_at = now(), "
                "band = coalesce(:band, band), download_s = :d, measure_s = :m, write_s = NULL WHERE exposure_id = :e"
            ),
            {"err": error[:4000], "r": run_id, "e": exposure_id, "band": band,
             "d": timings.get("download_s"), "m": timings.get("measure_s")},
        )


INTERRUPTED_ERROR = (
    "interrupted: the task measuring this exposure ended without recording a result (worker killed, "
    "database unreachable when the failure was recorded, or a timeout); its earlier measurements, if any, "
    "are kept; clear its 'process' task to measure it again"
)
"""Error recorded by :func:`recover_interrupted` on exposures left ``running``."""


def recover_interrupted(engine: sa.Engine, *, run_id: int | None = None, night: str | None = None,
                        older_than_s: float | None = None) -> list[str]:
    """Mark exposures left ``running`` by a task that died as ``failed`` (:data:`INTERRUPTED_ERROR`).

    Call it when no task of the selection can still be running: for ``run_id`` once every
    ``process`` task of that run has ended (the ``coadd`` step does), or with ``older_than_s``
    longer than any task can take. Their stored measurements are kept.

    Parameters
    ----------
    run_id : int, optional
        Only exposures whose latest attempt belongs to this run.
    night : str, optional
        Only exposures of this night (``YYYY-MM-DD``).
    older_than_s : float, optional
        Only exposures marked running more than this many seconds ago.

    Returns
    -------
    list of str
        Object keys of the exposures recovered.
    """
    if run_id is None and night is None and older_than_s is None:
        raise LumosValueError("recover_interrupted needs run_id, night or older_than_s: a bare call could catch "
                              "exposures that are being measured right now")
    clauses = ["status = 'running'"]
    params: dict[str, Any] = {"err": INTERRUPTED_ERROR}
    if run_id is not None:
        clauses.append("run_id = :r")
        params["r"] = run_id
    if night is not None:
        clauses.append("night = :night")
        params["night"] = night
    if older_than_s is not None:
        clauses.append("started_at < now() - make_interval(secs => :age)")
        params["age"] = float(older_than_s)
    with engine.begin() as conn:
        keys = conn.execute(
            sa.text(f"UPDATE lumos.exposures SET status = 'failed', error = :err, finished_at = now() "
                    f"WHERE {' AND '.join(clauses)} RETURNING object_key"),
            params,
        ).scalars().all()
    return sorted(keys)


def _array_literal(values: Any) -> str | None:
    if values is None or (isinstance(values, float) and math.isnan(values)):
        return None
    items = np.asarray(values, dtype=np.float64).ravel()
    return "{" + ",".join("NaN" if not np.isfinite(v) else repr(float(v)) for v in items) + "}"


def _mixture_arrays(table: pd.DataFrame) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for column in MIXTURE_COLUMNS:
        short = column.removeprefix("mix_")
        if column in table.columns:
            out[column] = [_array_literal(v) for v in table[column].to_numpy(dtype=object)]
            continue
        wide = sorted((c for c in table.columns if c.startswith(f"{short}_") and c[len(short) + 1:].isdigit()),
                      key=lambda c: int(c[len(short) + 1:]))
        if wide:
            block = table[wide].to_numpy(dtype=np.float64)
            text = pd.DataFrame(block).astype(str)  # shortest round-trip repr, 'nan' for NaN
            joined = text.iloc[:, 0]
            for k in range(1, block.shape[1]):
                joined = joined + "," + text.iloc[:, k]
            literals = ("{" + joined + "}").to_numpy(dtype=object)
            literals[np.isnan(block).all(axis=1)] = None
            out[column] = list(literals)
        else:
            out[column] = [None] * len(table)
    return out


def _extras(table: pd.DataFrame, mixture_sources: set[str]) -> list[str | None]:
    extra_columns = [c for c in table.columns if c not in _MEASUREMENT_CORE and c not in mixture_sources]
    if "extras" not in table.columns and not extra_columns:
        return [None] * len(table)
    base = table["extras"].to_list() if "extras" in table.columns else [None] * len(table)
    records = table[extra_columns].to_dict(orient="records") if extra_columns else [{}] * len(table)
    out = []
    for given, more in zip(base, records):
        merged: dict[str, Any] = {}
        if isinstance(given, Mapping):
            merged.update(given)
        elif isinstance(given, str) and given:
            merged.update(json.loads(given))
        merged.update(more)
        clean = {k: v for k, v in merged.items()  # NaN / None: the method has no such value for this row
                 if v is not None and not (isinstance(v, (float, np.floating)) and not math.isfinite(v))}
        out.append(json.dumps(clean, default=_json_default, sort_keys=True) if clean else None)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _staging_frame(table: pd.DataFrame, *, band: str, model_versions: Mapping[str, str]) -> pd.DataFrame:
    missing = [c for c in ("ref_id", "method", "flux", "flux_err") if c not in table.columns]
    if missing:
        raise LumosValueError(f"measurement table lacks column(s) {missing}; expected the measure_exposure format")
    methods = set(table["method"].astype(str).unique())
    unknown = sorted(methods - set(model_versions))
    if unknown:
        raise LumosValueError(f"measurement table has method(s) {unknown} without a model version; configure them")
    duplicated = table.duplicated(subset=["ref_id", "method"])
    if duplicated.any():
        row = table.loc[duplicated].iloc[0]
        raise LumosValueError(f"measurement table repeats ref_id={row['ref_id']} for method {row['method']!r}")
    mixture = _mixture_arrays(table)
    mixture_sources = set(MIXTURE_COLUMNS) | {
        c for c in table.columns for s in ("alpha", "mu", "sigma") if c.startswith(f"{s}_") and c[len(s) + 1:].isdigit()
    }
    flux = table["flux"].to_numpy(dtype=np.float64)
    flux_err = table["flux_err"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame({
        "ref_id": table["ref_id"].to_numpy(dtype=np.int64),
        "method": table["method"].astype(str).to_numpy(),
        "model_version": table["method"].astype(str).map(model_versions).to_numpy(),
        "band": table["band"].astype(str).to_numpy() if "band" in table.columns else band,
        "x": table["x"].to_numpy(dtype=np.float64) if "x" in table.columns else np.nan,
        "y": table["y"].to_numpy(dtype=np.float64) if "y" in table.columns else np.nan,
        "flux": np.where(np.isfinite(flux), flux, np.nan),
        "flux_err": np.where(np.isfinite(flux_err), flux_err, np.nan),
        "flag": table["flag"].to_numpy(dtype=np.int64) if "flag" in table.columns else 0,
        **mixture,
        "extras": _extras(table, mixture_sources),
    })
    return frame[list(_STAGING_COLUMNS)]


def _check_references(conn: sa.Connection, *, run_id: int, versions: Sequence[str]) -> None:
    """The run and model versions a write refers to must exist (checked once per write instead of a
    per-row foreign-key trigger; the writer role cannot delete runs or model versions)."""
    if not conn.execute(sa.text("SELECT 1 FROM lumos.pipeline_runs WHERE run_id = :r"), {"r": run_id}).scalar():
        raise DatabaseError(f"run_id={run_id} is not in lumos.pipeline_runs; start the run first")
    known = set(conn.execute(sa.text("SELECT model_version FROM lumos.model_versions "
                                     "WHERE model_version = ANY(:v)"), {"v": list(versions)}).scalars())
    missing = sorted(set(versions) - known)
    if missing:
        raise DatabaseError(f"model version(s) {missing} are not registered in lumos.model_versions; "
                            "register them (register_model_versions) before writing")


def write_measurements(
    engine: sa.Engine,
    table: pd.DataFrame,
    *,
    exposure_id: int,
    run_id: int,
    meta: ExposureMeta,
    model_versions: Mapping[str, str],
    timings: Mapping[str, float] | None = None,
) -> int:
    """Replace (upsert) the measurements of one exposure and mark it done, atomically.

    The exposure's row is locked first, so concurrent writes of the same exposure (two runs of one
    night) take turns instead of colliding on the primary key; the last to commit wins.

    Parameters
    ----------
    table : DataFrame, shape (n_rows, ...)
        Long format of ``lumos_ops.measure.measure_exposure``: ``ref_id``, ``method``, ``x``, ``y``
        (pixels), ``band``, ``flux``, ``flux_err`` (e-/s), ``flag``, and optionally the mixture
        (``mix_alpha``/``mix_mu``/``mix_sigma`` sequences or ``alpha_k``/``mu_k``/``sigma_k``
        columns), ``extras`` (dict) and further columns, which are kept in ``extras``.
    exposure_id, run_id : int
        The exposure's row and the provenance row.
    meta : ExposureMeta
        Header values recorded on the exposure row.
    model_versions : mapping of str to str
        Version of each method present in ``table``.
    timings : mapping of str to float, optional
        ``download_s``, ``measure_s`` (s) recorded on the exposure row; ``write_s`` is measured here.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    LumosValueError
        The table is malformed (missing columns, repeated source, unknown method).
    DatabaseError
        The transaction failed; nothing of it was kept.
    """
    import time

    start = time.perf_counter()
    frame = _staging_frame(table, band=meta.band, model_versions=model_versions)
    methods = sorted(set(frame["method"])) or sorted(model_versions)
    timings = dict(timings or {})
    versions = sorted(set(frame["model_version"]))
    try:
        with engine.begin() as conn:
            _check_references(conn, run_id=run_id, versions=versions)
            if conn.execute(sa.text("SELECT 1 FROM lumos.exposures WHERE exposure_id = :e FOR UPDATE"),
                            {"e": exposure_id}).scalar() is None:
                raise DatabaseError(f"exposure_id={exposure_id} is not in lumos.exposures; register it first")
            conn.execute(sa.text(
                "CREATE TEMP TABLE lumos_measurement_staging (ref_id bigint, method text, model_version text, "
                "band text, x real, y real, flux double precision, flux_err double precision, flag integer, "
                "mix_alpha real[], mix_mu real[], mix_sigma real[], extras jsonb) ON COMMIT DROP"
            ))
            _copy(conn, "lumos_measurement_staging", _STAGING_COLUMNS, frame)
            conn.execute(
                sa.text("DELETE FROM lumos.measurements WHERE exposure_id = :e AND method = ANY(:methods)"),
                {"e": exposure_id, "methods": methods},
            )
            columns = ", ".join(_STAGING_COLUMNS)
            conn.execute(
                sa.text(
                    f"INSERT INTO lumos.measurements (exposure_id, run_id, {columns}) "
                    f"SELECT :e, :r, {columns} FROM lumos_measurement_staging"
                ),
                {"e": exposure_id, "r": run_id},
            )
            conn.execute(
                sa.text(
                    "UPDATE lumos.exposures SET status = 'done', error = NULL, run_id = :r, band = :band, "
                    "epoch = :epoch, exptime = :exptime, psf_fwhm = :psf, zero_point = :zp, mjd = :mjd, "
                    "nan_fraction = :nan, n_measurements = :n, download_s = :d, measure_s = :m, "
                    "checksum = coalesce(:checksum, checksum), size_bytes = coalesce(:size, size_bytes), "
                    "write_s = :w, finished_at = now(), measured_run_id = :r, measured_at = now() "
                    "WHERE exposure_id = :e"
                ),
                {"r": run_id, "band": meta.band, "epoch": meta.epoch, "exptime": meta.exptime,
                 "psf": meta.psf_fwhm, "zp": meta.zero_point, "mjd": meta.mjd, "nan": meta.nan_fraction,
                 "checksum": meta.checksum, "size": meta.size_bytes,
                 "n": len(frame), "d": timings.get("download_s"), "m": timings.get("measure_s"),
                 "w": time.perf_counter() - start, "e": exposure_id},
            )
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"exposure_id={exposure_id}: writing {len(frame)} measurements failed "
                            f"and was rolled back: {exc.orig}") from None
    return len(frame)
