"""Writes to the photometry database: runs, model versions, catalogue, exposures, measurements.

Measurements of one exposure are written in one transaction: the exposure's row is locked, its
rows of those methods are deleted (by primary-key prefix) and the new rows are streamed with one
binary ``COPY`` straight into ``lumos.measurements`` (built column-wise from the table, without a
staging table or a Python loop over rows), then the exposure is marked done. A rerun therefore
replaces rows instead of duplicating them (the primary key forbids duplicates anyway), readers see
the old rows until the commit, and a failure or crash before the commit leaves nothing
half-written. The replace is an upsert without ``ON CONFLICT``: it also drops rows a rerun no
longer produces and never depends on planner statistics of the freshly grown table. Every statement
is parameterised; the server's durability settings are left as they are.

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
from lumos_ops.lumos.mixture_table import has_mixture, is_mixture_column, mixtures_from_table

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
    "close_stale_runs",
    "INTERRUPTED_ERROR",
    "write_measurements",
    "fresh_methods",
]

MIXTURE_COLUMNS: tuple[str, ...] = ("mix_alpha", "mix_mu", "mix_sigma", "mix_truncated")
"""Columns of ``lumos.measurements`` holding the LUMOS Gaussian mixture: weights, means and sigmas
(``real[]``, e-/s) and the truncation flag; written from the table's ``alpha_k``/``mu_k``/``sigma_k``
and ``truncated`` columns (:mod:`lumos_ops.lumos.mixture_table`)."""

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


def close_stale_runs(engine: sa.Engine, *, older_than_s: float, night: str | None = None) -> list[int]:
    """Close as ``failed`` the runs still ``running`` that started more than ``older_than_s`` seconds
    ago (of ``night`` only, when given): a process that died, or lost its database, before it could
    close its own. Returns their ``run_id``s."""
    clauses = ["status = 'running'", "started_at < now() - make_interval(secs => :age)"]
    params: dict[str, Any] = {"age": float(older_than_s)}
    if night is not None:
        clauses.append("night = :night")
        params["night"] = night
    ids = _update_where(engine, "UPDATE lumos.pipeline_runs SET status = 'failed', finished_at = now()", clauses,
                        params, returning="run_id")
    return sorted(int(i) for i in ids)


def _update_where(engine: sa.Engine, update: str, clauses: Sequence[str], params: Mapping[str, Any], *,
                  returning: str) -> list[Any]:
    """Run ``update`` restricted to the rows meeting every one of ``clauses``; the ``returning`` column of each."""
    with engine.begin() as conn:
        return list(conn.execute(sa.text(f"{update} WHERE {' AND '.join(clauses)} RETURNING {returning}"),
                                 params).scalars().all())


def register_model_versions(engine: sa.Engine, versions: Iterable[ModelVersion], *, overwrite: bool = True,
                            reprocessing: bool = False) -> None:
    """Insert the model versions; existing ones get the new checksum/metadata when ``overwrite``.

    ``overwrite=False`` is what the pipeline's writer role may do (it cannot UPDATE the registry):
    existing versions are left as they are. A new version's status is the registry's rule (V005: a
    classical version is production when its method has none). ``reprocessing`` registers every new
    version as a candidate with metadata ``registered_by: reprocess``, which ``lumos.latest_coadds``
    leaves out until it is promoted (V010): nothing a scientist queries changes before a promotion.

    Raises
    ------
    DatabaseError
        A version string is already registered for another method, or (``overwrite=False``) with
        another checksum: a registered version names one set of weights for good.
    """
    tag = {"registered_by": "reprocess"} if reprocessing else {}
    rows = [
        {"v": m.model_version, "m": m.method, "k": m.kind, "c": m.checksum,
         "meta": json.dumps({**m.metadata, **tag}, sort_keys=True, default=str)}
        for m in versions
    ]
    if not rows:
        return
    named: dict[str, str] = {}
    for row in rows:
        if named.setdefault(row["v"], row["m"]) != row["m"]:
            raise LumosValueError(f"model_version {row['v']!r} is given to methods {named[row['v']]!r} and "
                                  f"{row['m']!r}; give each method its own version string")
    from lumos_ops.pipeline.registry import lock_methods

    with engine.begin() as conn:
        lock_methods(conn, [row["m"] for row in rows])
        if reprocessing:
            conn.execute(sa.text("SET LOCAL lumos.new_versions = 'candidate'"))
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

    Two runs registering the same night at once (a night triggered twice) are serialised by a
    transaction-level advisory lock per night: the upsert's ``ON CONFLICT (object_key)`` cannot
    arbitrate the second unique key ``(night, expnum, ccd)`` between concurrent inserts, so without
    the lock one run would fail with a unique violation.
    """
    ids = []
    with engine.begin() as conn:
        for night in sorted({str(row["night"]) for row in rows}):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('lumos.exposures:' || :night))"),
                         {"night": night})
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
    keys = _update_where(engine, "UPDATE lumos.exposures SET status = 'failed', error = :err, finished_at = now()",
                         clauses, params, returning="object_key")
    return sorted(keys)


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


# --- Binary COPY of measurement rows ------------------------------------------------------------
#
# A write is one ``COPY lumos.measurements (...) FROM STDIN (FORMAT binary)``: PostgreSQL reads
# numbers and arrays as bytes instead of parsing text, and no staging table is filled and copied.
# The rows are built without a Python loop over rows. Every column but ``extras`` becomes a
# *segment*: a (rows, width) byte block of which each row keeps a prefix (``kept`` bytes; 4 of a
# NULL's 8, the length -1 and no value). Laid side by side, the boolean selection ``block[keep]``
# reads row after row, i.e. it is the rows of the COPY stream up to ``extras``. The jsonb ``extras``
# text is built column-wise by pyarrow (numbers with the shortest round-trip digits, as ``repr``)
# and appended to each row by pyarrow too. What is stored is exactly what the earlier text path
# (CSV ``COPY`` of Python-built literals into a staging table) stored, except that path lost a
# mixture with one NaN component (NULL instead of the NaN element) under pandas 3.

_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
_PGCOPY_TRAILER = b"\xff\xff"
_FLOAT4_OID = 700
_COPY_COLUMNS: tuple[str, ...] = (
    "exposure_id", "ref_id", "run_id", "flag", "method", "model_version", "band", "x", "y", "flux", "flux_err",
    *MIXTURE_COLUMNS, "extras",
)
_CHUNK_BYTES = 32 << 20
"""Upper bound of the byte block built at once (rows are encoded in chunks below it)."""
_MAX_RUNS = 64
"""A table with fewer runs of one method is encoded run by run (each lacks the others' columns)."""


@dataclasses.dataclass(frozen=True)
class _Segment:
    """Bytes of one column in every row: ``block`` (n, width) uint8, of which row ``i`` keeps the
    first ``kept[i]`` (all of them when ``kept`` is None)."""

    block: np.ndarray
    kept: np.ndarray | None = None

    def kept_bytes(self) -> np.ndarray | int:
        return self.block.shape[1] if self.kept is None else self.kept


def _struct_segment(n: int, fields: Sequence[tuple[str, str, Any]], kept: np.ndarray | None = None) -> _Segment:
    """A segment of big-endian fields ``(name, dtype, values)`` laid out in order."""
    record = np.empty(n, dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, values in fields:
        record[name] = values
    return _Segment(record.view(np.uint8).reshape(n, record.dtype.itemsize), kept)


def _text_field(codes: np.ndarray, uniques: Sequence[str]) -> _Segment:
    """``text`` column: row ``i`` holds ``uniques[codes[i]]`` (UTF-8)."""
    encoded = [str(u).encode() for u in uniques]
    width = 4 + max(len(e) for e in encoded)
    table = np.zeros((len(encoded), width), np.uint8)
    lens = np.empty(len(encoded), np.int64)
    for k, value in enumerate(encoded):
        table[k, :4 + len(value)] = np.frombuffer(len(value).to_bytes(4, "big") + value, np.uint8)
        lens[k] = 4 + len(value)
    return _Segment(table[codes], None if np.all(lens == width) else lens[codes])


def _to_real(values: np.ndarray, what: str) -> np.ndarray:
    """float64 -> float32 as PostgreSQL's ``real`` input reads the shortest ``repr`` of each value.

    ``astype`` rounds the double, ``float4in`` (``strtof``) the decimal ``repr``: they differ only
    for doubles exactly halfway between two floats (or in the subnormal range), which are redone
    from the decimal text. Finite values beyond the range of ``real`` raise, as the server does.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    finite = np.isfinite(values)
    bits = values.view(np.uint64)
    tiny = np.abs(values) < np.finfo(np.float32).smallest_normal
    redo = finite & (((bits & np.uint64(0x1FFFFFFF)) == np.uint64(0x10000000)) | (tiny & (values != 0)))
    if redo.any():
        from decimal import Decimal

        for index in zip(*np.nonzero(redo)):
            decimal = Decimal(repr(float(values[index])))
            nearest = out[index]
            candidates = [nearest, np.nextafter(nearest, np.float32(-np.inf)),
                          np.nextafter(nearest, np.float32(np.inf))]
            out[index] = min(candidates, key=lambda c: (abs(Decimal(float(c)) - decimal),
                                                         int(np.asarray(c).view(np.uint32)) & 1))
    bad = finite & (np.isinf(out) | ((out == 0) & (values != 0)))
    if bad.any():
        raise DatabaseError(f"{what} value {float(values[bad].ravel()[0])!r} is out of range for type real; "
                            "nothing was written")
    return out


def _real_field(values: np.ndarray, what: str) -> _Segment:
    """Nullable ``real``: NaN -> NULL, infinities kept."""
    valid = ~np.isnan(values)
    return _struct_segment(values.size, [("l", ">i4", np.where(valid, 4, -1)), ("v", ">f4", _to_real(values, what))],
                           np.where(valid, 8, 4))


def _double_field(values: np.ndarray) -> _Segment:
    """Nullable ``double precision``: NaN and infinities -> NULL."""
    valid = np.isfinite(values)
    return _struct_segment(values.size, [("l", ">i4", np.where(valid, 8, -1)), ("v", ">f8", values)],
                           np.where(valid, 12, 4))


def _array_field(elements: np.ndarray, counts: np.ndarray, null: np.ndarray) -> _Segment:
    """Nullable one-dimensional ``real[]`` of the first ``counts[i]`` of ``elements[i]`` (float32)."""
    n, m = elements.shape
    words = np.empty((n, 6 + 2 * m), ">i4")
    size = 20 + 8 * counts
    words[:, 0] = np.where(null, -1, np.where(counts == 0, 12, size))  # field length
    words[:, 1] = np.where(counts == 0, 0, 1)  # dimensions (an empty array has none)
    words[:, 2] = 0  # no NULL elements
    words[:, 3] = _FLOAT4_OID
    words[:, 4] = counts
    words[:, 5] = 1  # lower bound
    words[:, 6::2] = 4
    words[:, 7::2] = elements.astype(">f4").view(">i4")
    kept = np.where(null, 4, np.where(counts == 0, 16, 4 + size))
    return _Segment(words.view(np.uint8).reshape(n, -1), None if np.all(kept == 4 * words.shape[1]) else kept)


def _bool_field(values: np.ndarray, null: np.ndarray) -> _Segment:
    """Nullable ``boolean``."""
    return _struct_segment(values.size, [("l", ">i4", np.where(null, -1, 1)), ("v", "u1", values)],
                           np.where(null, 4, 5))


_REAL_UNDERFLOW: float = float(np.finfo(np.float32).smallest_subnormal) / 2.0
"""Magnitudes at or below this round to 0 as ``real`` (half the smallest subnormal, 7.0e-46)."""


def _mixture_fields(table: pd.DataFrame) -> list[_Segment]:
    """``mix_alpha``, ``mix_mu``, ``mix_sigma`` and ``mix_truncated`` of the table's mixtures
    (:func:`~lumos_ops.lumos.mixture_table.mixtures_from_table`): each ``real[]`` holds the K
    components with NaN and infinities kept, NULL where all of them are NaN; ``mix_truncated`` is
    NULL where all three are. Every field is NULL when the table has no mixture columns.

    A component value too small for ``real`` to hold (at most half its smallest subnormal, 7e-46,
    which the server refuses as out of range) is stored as 0: a weight of 1e-49 is a component
    without weight. Subnormal values are kept, as the server keeps them."""
    n = len(table)
    if not has_mixture(table):
        null = _Segment(np.full((n, 4), 255, np.uint8))
        return [null] * len(MIXTURE_COLUMNS)
    mixtures = mixtures_from_table(table)
    fields, none = [], np.ones(n, bool)
    for column, block in zip(MIXTURE_COLUMNS, (mixtures.alpha, mixtures.mu, mixtures.sigma)):
        block = np.where(np.abs(block) <= _REAL_UNDERFLOW, np.copysign(0.0, block), block)
        null = np.isnan(block).all(axis=1)
        none &= null
        fields.append(_array_field(_to_real(block, column), np.full(n, block.shape[1], np.int64), null))
    fields.append(_bool_field(mixtures.truncated, none))
    return fields


def _number_text(values: np.ndarray, valid: np.ndarray) -> Any:
    """JSON text of ``values`` (a pyarrow string array, null where not ``valid``).

    pyarrow writes the shortest round-trip digits, as ``repr``; integral floats below 1e16 get
    ``.0`` like ``repr`` (jsonb keeps that scale: ``1.0`` stays ``1.0``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype.kind != "f":
        return pc.cast(pa.array(values, mask=~valid), pa.string())
    values = values.astype(np.float64, copy=False)
    text = pc.cast(pa.array(values, mask=~valid), pa.string())
    integral = valid & (np.abs(values) < 1e16) & (values == np.floor(values))
    if integral.any():
        whole = values[integral]
        digits = pc.cast(pa.array(whole.astype(np.int64)), pa.string())
        digits = pc.if_else(pa.array((whole == 0) & np.signbit(whole)), "-0", digits)
        text = pc.replace_with_mask(text, pa.array(integral), pc.binary_join_element_wise(digits, ".0", ""))
    return text


def _extras_text(column: pd.Series) -> Any:
    """JSON text of a column's values for ``extras`` (pyarrow strings, null where the row has no value).

    NaN, infinities and None mean "no value": the key is left out. Numbers, booleans, strings and
    lists of finite numbers of one length are vectorised; other values take the row path of the
    earlier writer (``to_dict`` records, ``json.dumps`` with :func:`_json_default`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":  # pandas' own dtypes (str, Int64...) go below
        values = column.to_numpy()
        if dtype.kind == "b":
            return pc.if_else(pa.array(values), "true", "false")
        return _number_text(values, np.isfinite(values) if dtype.kind == "f" else np.ones(values.size, bool))
    values = column.to_numpy(dtype=object)
    if set(map(type, values)) <= {bool, np.bool_, float, np.float64, type(None), str}:
        missing = pd.isna(values)
        kind = pd.api.types.infer_dtype(values[~missing], skipna=False)
        if kind == "boolean":
            return pc.if_else(pa.array(values == True, mask=missing), "true", "false")  # noqa: E712
        if kind in ("string", "empty"):
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            return pa.array([json.dumps(u) for u in uniques], pa.string()).take(pa.array(codes, mask=codes < 0))
    vectors = _number_lists_text(values)
    if vectors is not None:
        return vectors
    texts = []
    for record in column.to_frame().to_dict(orient="records"):
        value = next(iter(record.values()))
        dropped = value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value))
        texts.append(None if dropped else json.dumps(value, default=_json_default, sort_keys=True))
    return pa.array(texts, pa.string())


def _number_lists_text(values: np.ndarray) -> Any:
    """JSON text of a column whose values are lists (or arrays) of finite numbers of one length, or
    None or NaN (no value); None when the column is anything else (the row path handles it).

    Vectorised per list position (:func:`_number_text`), e.g. the per-residual-bin ``rho`` of the
    shared-error term, which the row path would serialise row by row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    present = np.array([isinstance(v, (list, tuple, np.ndarray)) for v in values], dtype=bool)
    missing = np.array([v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v)) for v in values],
                       dtype=bool)
    if not present.any() or not (present | missing).all():
        return None
    lengths = {len(v) for v in values[present]}
    if len(lengths) != 1 or 0 in lengths:
        return None
    try:
        matrix = np.array([np.asarray(v, dtype=np.float64) for v in values[present]])
    except (TypeError, ValueError):
        return None
    if not np.isfinite(matrix).all():
        return None
    full = np.zeros((values.size, matrix.shape[1]))
    full[present] = matrix
    parts = [_number_text(full[:, j], present) for j in range(full.shape[1])]
    joined = pc.binary_join_element_wise(*parts, ", ")
    return pc.binary_join_element_wise(pa.scalar("["), joined, pa.scalar("]"), "")


def _binary_array(n: int, data: bytes | np.ndarray, width: int, valid: np.ndarray | None) -> Any:
    """pyarrow large_binary array of ``n`` values of ``width`` bytes each (null where not ``valid``)."""
    import pyarrow as pa

    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int64) * width)
    return pa.Array.from_buffers(pa.large_binary(), n, [bitmap, offsets, pa.py_buffer(data)], null_count=-1)


def _extras_json(table: pd.DataFrame, extra_columns: Sequence[str], mixture_sources: set[str]) -> tuple[_Segment, list]:
    """The jsonb ``extras`` field: its head (length, version 1) and the pieces of its JSON text.

    Each row's text is the concatenation of the pieces (pyarrow arrays, null: nothing): per column
    a key ``, "name": `` (``{ "name": `` for the row's first value) and the value, then ``}``. A row
    without values has none and stores NULL.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(table)
    given = "extras" in table.columns and table["extras"].notna().any()
    if given or any(not isinstance(c, str) for c in extra_columns) or len(set(extra_columns)) < len(extra_columns):
        text = pa.array(_extras(table, mixture_sources), pa.string())  # the row path of the earlier writer
        present = text.is_valid().to_numpy(zero_copy_only=False)
        length = pc.fill_null(pc.binary_length(text), 0).to_numpy().astype(np.int64)
        pieces = [text.cast(pa.large_binary())]
    else:
        texts = [_extras_text(table[name]) for name in extra_columns]
        valid = np.zeros((n, len(texts)), bool)
        for k, text in enumerate(texts):
            valid[:, k] = text.is_valid().to_numpy(zero_copy_only=False)
        present = valid.any(axis=1)
        first = valid & (np.cumsum(valid, axis=1) == 1)
        length = present.astype(np.int64)  # the closing brace
        pieces = []
        for k, (name, text) in enumerate(zip(extra_columns, texts)):
            key = f", {json.dumps(name)}: ".encode()
            data = np.frombuffer(key * n, np.uint8).reshape(n, len(key)).copy()
            data[first[:, k], :2] = np.frombuffer(b"{ ", np.uint8)
            pieces += [_binary_array(n, data, len(key), valid[:, k]), text.cast(pa.large_binary())]
            length += np.where(valid[:, k], len(key) + pc.fill_null(pc.binary_length(text), 0).to_numpy(), 0)
        pieces.append(_binary_array(n, b"}" * n, 1, present))
    head = _struct_segment(n, [("l", ">i4", np.where(present, length + 1, -1)), ("v", "u1", 1)],
                           np.where(present, 5, 4))
    return head, pieces if present.any() else []


def _assemble(segments: Sequence[_Segment], n: int, pieces: Sequence[Any], bounds: Sequence[int]) -> bytes:
    """The binary COPY stream: the segments of each row, then its ``pieces`` (pyarrow, null: nothing).

    Rows are encoded in chunks: the runs between ``bounds`` (e.g. one method each, whose rows lack
    the other methods' columns), split further so that no chunk's block exceeds ``_CHUNK_BYTES``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    kept = [np.broadcast_to(s.kept_bytes(), n) for s in segments]
    step = max(1, _CHUNK_BYTES // max(sum(s.block.shape[1] for s in segments), 1))
    out = [_PGCOPY_HEADER]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for a in range(start, stop, step):
            b = min(stop, a + step)
            widths = [int(k[a:b].max()) for k in kept]
            block = np.empty((b - a, sum(widths)), np.uint8)
            keep = np.ones(block.shape, bool)
            offset = 0
            for segment, k, w in zip(segments, kept, widths):
                block[:, offset:offset + w] = segment.block[a:b, :w]
                if segment.kept is not None and int(k[a:b].min()) < w:
                    keep[:, offset:offset + w] = np.arange(w) < k[a:b, None]
                offset += w
            body = block[keep]
            used = [p.slice(a, b - a) for p in pieces]
            used = [p for p in used if p.null_count < len(p)]
            if not used:
                out.append(body)
                continue
            offsets = np.zeros(b - a + 1, np.int64)
            np.cumsum(sum(k[a:b] for k in kept), out=offsets[1:])
            heads = pa.Array.from_buffers(pa.large_binary(), b - a, [None, pa.py_buffer(offsets), pa.py_buffer(body)])
            rows = pc.binary_join_element_wise(heads, *used, pa.scalar(b"", pa.large_binary()),
                                               null_handling="replace", null_replacement="")
            if len(rows) != b - a:
                raise RuntimeError(f"pyarrow joined {len(rows)} rows of {b - a}")
            ends = np.frombuffer(rows.buffers()[1], np.int64, count=len(rows) + 1, offset=8 * rows.offset)
            out.append(memoryview(rows.buffers()[2])[ends[0]:ends[-1]])
    out.append(_PGCOPY_TRAILER)
    return b"".join(out)


@dataclasses.dataclass(frozen=True)
class _Rows:
    """A measurement table ready for ``COPY``: the binary stream, its row count, methods and versions."""

    payload: bytes
    n: int
    methods: list[str]
    versions: list[str]


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes and distinct values of a column as text (``astype(str)``)."""
    codes, uniques = pd.factorize(column.astype(str), use_na_sentinel=False)
    return codes, [str(u) for u in uniques]


def _prepare_rows(table: pd.DataFrame, *, band: str, model_versions: Mapping[str, str], exposure_id: int,
                  run_id: int) -> _Rows:
    """Check a measurement table and encode it as binary ``COPY`` rows of ``lumos.measurements``."""
    missing = [c for c in ("ref_id", "method", "flux", "flux_err") if c not in table.columns]
    if missing:
        raise LumosValueError(f"measurement table lacks column(s) {missing}; expected the measure_exposure format")
    n = len(table)
    method_codes, method_names = _codes(table["method"])
    unknown = sorted(set(method_names) - set(model_versions))
    if unknown:
        raise LumosValueError(f"measurement table has method(s) {unknown} without a model version; configure them")
    ref_id = table["ref_id"].to_numpy(dtype=np.int64)
    order = np.lexsort((ref_id, method_codes))
    same = (ref_id[order][1:] == ref_id[order][:-1]) & (method_codes[order][1:] == method_codes[order][:-1])
    if same.any():
        row = int(order[1:][same].min())
        raise LumosValueError(f"measurement table repeats ref_id={ref_id[row]} for method "
                              f"{method_names[method_codes[row]]!r}")
    flag = table["flag"].to_numpy(dtype=np.int64) if "flag" in table.columns else np.zeros(n, np.int64)
    if n and (flag.min() < -2**31 or flag.max() >= 2**31):
        raise DatabaseError(f"flag value {flag[(flag < -2**31) | (flag >= 2**31)][0]} is out of range for type "
                            "integer; nothing was written")
    versions = [model_versions[m] for m in method_names]
    if n == 0:
        return _Rows(_PGCOPY_HEADER + _PGCOPY_TRAILER, 0, sorted(method_names), sorted(set(versions)))
    stored_names = [c for c in table.columns if c in MIXTURE_COLUMNS]
    if stored_names:
        raise LumosValueError(f"measurement table has column(s) {stored_names}: give the mixture as alpha_k, mu_k, "
                              "sigma_k and truncated columns (lumos_ops.lumos.mixture_table)")
    mixture_sources = {c for c in table.columns if is_mixture_column(c)}
    extra_columns = [c for c in table.columns if c not in _MEASUREMENT_CORE and c not in mixture_sources]
    band_codes, band_names = _codes(table["band"]) if "band" in table.columns else (np.zeros(n, np.int64), [band])
    x = table["x"].to_numpy(dtype=np.float64) if "x" in table.columns else np.full(n, np.nan)
    y = table["y"].to_numpy(dtype=np.float64) if "y" in table.columns else np.full(n, np.nan)
    extras_head, extras_pieces = _extras_json(table, extra_columns, mixture_sources)
    segments = [
        _struct_segment(n, [("count", ">i2", len(_COPY_COLUMNS)),
                            ("l0", ">i4", 8), ("exposure_id", ">i8", exposure_id),
                            ("l1", ">i4", 8), ("ref_id", ">i8", ref_id),
                            ("l2", ">i4", 8), ("run_id", ">i8", run_id),
                            ("l3", ">i4", 4), ("flag", ">i4", flag)]),
        _text_field(method_codes, method_names),
        _text_field(method_codes, versions),
        _text_field(band_codes, band_names),
        _real_field(x, "x"),
        _real_field(y, "y"),
        _double_field(table["flux"].to_numpy(dtype=np.float64)),
        _double_field(table["flux_err"].to_numpy(dtype=np.float64)),
        *_mixture_fields(table),
        extras_head,
    ]
    runs = np.flatnonzero(method_codes[1:] != method_codes[:-1]) + 1
    bounds = [0, *runs.tolist(), n] if len(runs) < _MAX_RUNS else [0, n]
    return _Rows(_assemble(segments, n, extras_pieces, bounds), n, sorted(method_names), sorted(set(versions)))


def _copy_binary(conn: sa.Connection, table: str, columns: Sequence[str], payload: bytes) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT binary)`` of a prepared stream."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)",
                           io.BytesIO(payload), size=1 << 20)
    finally:
        cursor.close()


def _check_and_lock(conn: sa.Connection, *, exposure_id: int, run_id: int, versions: Sequence[str]) -> None:
    """Lock the exposure's row; the exposure, run and model versions a write refers to must exist.

    One round trip. The references are checked once per write instead of by per-row foreign-key
    triggers (the writer role cannot delete runs or model versions).
    """
    found = conn.execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM lumos.pipeline_runs WHERE run_id = :r) AS run, "
                "ARRAY(SELECT model_version FROM lumos.model_versions WHERE model_version = ANY(:v)) AS versions, "
                "EXISTS (SELECT 1 FROM lumos.exposures WHERE exposure_id = :e FOR UPDATE) AS exposure"),
        {"r": run_id, "v": list(versions), "e": exposure_id},
    ).one()
    if not found.run:
        raise DatabaseError(f"run_id={run_id} is not in lumos.pipeline_runs; start the run first")
    missing = sorted(set(versions) - set(found.versions))
    if missing:
        raise DatabaseError(f"model version(s) {missing} are not registered in lumos.model_versions; "
                            "register them (register_model_versions) before writing")
    if not found.exposure:
        raise DatabaseError(f"exposure_id={exposure_id} is not in lumos.exposures; register it first")


_FRESH_RUN = (
    "p.night = e.night AND (p.run_id = :r OR p.finished_at IS NULL OR p.finished_at >= e.registered_at)"
)
"""Rows of run ``p`` are fresh for exposure ``e`` in run ``:r``: written by this run, or by a run of
the same night still open or closed after ``e`` was last registered (two runs of one night at once)."""


def fresh_methods(conn: sa.Connection, *, exposure_id: int, run_id: int, versions: Mapping[str, str]) -> set[str]:
    """The methods of ``versions`` (``{method: version}``) that have fresh rows for the exposure."""
    methods = sorted(versions)
    return set(conn.execute(
        sa.text("SELECT DISTINCT m.method FROM lumos.measurements AS m "
                "JOIN unnest(CAST(:methods AS text[]), CAST(:versions AS text[])) AS v(method, model_version) "
                "USING (method, model_version) JOIN lumos.pipeline_runs AS p ON p.run_id = m.run_id "
                "JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id "
                f"WHERE m.exposure_id = :e AND {_FRESH_RUN}"),
        {"e": exposure_id, "r": run_id, "methods": methods, "versions": [versions[m] for m in methods]},
    ).scalars())


def _step_progress(conn: sa.Connection, *, exposure_id: int, run_id: int, run_versions: Mapping[str, str],
                   written: Sequence[str]) -> tuple[bool, bool]:
    """Whether every method of the run has fresh rows for the exposure, and whether a method other
    than those just ``written`` has (a step done before this one)."""
    fresh = fresh_methods(conn, exposure_id=exposure_id, run_id=run_id, versions=run_versions)
    return fresh >= set(run_versions), bool(fresh - set(written))


def write_measurements(
    engine: sa.Engine,
    table: pd.DataFrame,
    *,
    exposure_id: int,
    run_id: int,
    meta: ExposureMeta,
    model_versions: Mapping[str, str],
    timings: Mapping[str, float] | None = None,
    record_exposure: bool = True,
    run_versions: Mapping[str, str] | None = None,
) -> int:
    """Replace (upsert) the measurements of one exposure and mark it done, atomically.

    Only rows of the written (method, model version) pairs are replaced: rows of other versions of
    the same methods (a reprocessing's candidate, an earlier production version) stay.

    The exposure's row is locked first, so concurrent writes of the same exposure (two runs of one
    night) take turns instead of colliding on the primary key; the last to commit wins. Fluxes and
    their errors that are NaN or infinite are stored as NULL, ``x``/``y`` NaN as NULL; a mixture
    array whose components are all NaN is NULL (NaN components of a partial one are kept), and
    ``mix_truncated`` is NULL where all three arrays are (a missing ``truncated`` value of a row
    with a mixture is false); NaN, infinite and None values are left out of ``extras`` (NULL when
    nothing is left).

    Parameters
    ----------
    table : DataFrame, shape (n_rows, ...)
        Long format of ``lumos_ops.measure.measure_exposure``: ``ref_id``, ``method``, ``x``, ``y``
        (pixels), ``band``, ``flux``, ``flux_err`` (e-/s), ``flag``, and optionally the mixture
        (``alpha_k``/``mu_k``/``sigma_k`` and ``truncated`` columns, :mod:`lumos_ops.lumos.mixture_table`;
        stored in the :data:`MIXTURE_COLUMNS`), ``extras`` (dict) and further columns, which are
        kept in ``extras``.
    exposure_id, run_id : int
        The exposure's row and the provenance row.
    meta : ExposureMeta
        Header values recorded on the exposure row.
    model_versions : mapping of str to str
        Version of each method present in ``table``.
    timings : mapping of str to float, optional
        ``download_s``, ``measure_s`` (s) recorded on the exposure row; ``write_s`` is measured here.
    record_exposure : bool, keyword-only
        Mark the exposure done with ``meta`` and the timings (the nightly run). False writes the
        rows only and leaves the exposure's state and bookkeeping alone (reprocessing under a new
        model version).
    run_versions : mapping of str to str, optional
        Every method of the run and its version, when this write is one step of a night that
        measures the methods in several steps (classical, then LUMOS): the exposure is marked done
        only once every one of them has fresh rows (written by this run, or by a run of the same
        night still open or closed after the exposure was last registered); until then its status
        is left as it is. The timings are added to those of a step already done.

    The exposure's ``n_measurements`` becomes the rows it holds after the write, of every method and
    model version, so that ``lumos.night_summary`` counts what the database stores, not what the last
    write wrote (a night rerun with fewer methods keeps the others' rows). A reprocessing's write
    (``record_exposure`` False) leaves it, like the rest of the exposure's bookkeeping: its rows are
    counted by ``lumos_ops.pipeline.reprocess``'s progress.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    LumosValueError
        The table is malformed (missing columns, repeated source, unknown method).
    DatabaseError
        A value does not fit its column (e.g. beyond the range of ``real``), a reference is
        missing, or the transaction failed: nothing of the write was kept.
    """
    import time

    start = time.perf_counter()
    try:
        rows = _prepare_rows(table, band=meta.band, model_versions=model_versions, exposure_id=exposure_id,
                             run_id=run_id)
    except DatabaseError as exc:  # a value the column cannot hold
        raise DatabaseError(f"exposure_id={exposure_id}: {exc}") from None
    methods = rows.methods or sorted(model_versions)
    timings = dict(timings or {})
    try:
        with engine.begin() as conn:
            _check_and_lock(conn, exposure_id=exposure_id, run_id=run_id, versions=rows.versions)
            conn.execute(
                sa.text("DELETE FROM lumos.measurements WHERE exposure_id = :e AND (method, model_version) IN "
                        "(SELECT * FROM unnest(CAST(:methods AS text[]), CAST(:versions AS text[])))"),
                {"e": exposure_id, "methods": list(methods), "versions": [model_versions[m] for m in methods]},
            )
            if rows.n:
                _copy_binary(conn, "lumos.measurements", _COPY_COLUMNS, rows.payload)
            if not record_exposure:
                return rows.n
            n_total = conn.execute(sa.text("SELECT count(*) FROM lumos.measurements WHERE exposure_id = :e"),
                                   {"e": exposure_id}).scalar_one()
            complete, other_done = True, False
            if run_versions is not None:
                complete, other_done = _step_progress(conn, exposure_id=exposure_id, run_id=run_id,
                                                      run_versions=run_versions, written=methods)
            conn.execute(
                sa.text(
                    "UPDATE lumos.exposures SET status = CASE WHEN :complete THEN 'done' ELSE status END, "
                    "error = CASE WHEN :complete THEN NULL ELSE error END, run_id = :r, band = :band, "
                    "epoch = :epoch, exptime = :exptime, psf_fwhm = :psf, zero_point = :zp, mjd = :mjd, "
                    "nan_fraction = :nan, n_measurements = :n, "
                    "download_s = CASE WHEN :add THEN coalesce(download_s, 0) ELSE 0 END + :d, "
                    "measure_s = CASE WHEN :add THEN coalesce(measure_s, 0) ELSE 0 END + :m, "
                    "write_s = CASE WHEN :add THEN coalesce(write_s, 0) ELSE 0 END + :w, "
                    "checksum = coalesce(:checksum, checksum), size_bytes = coalesce(:size, size_bytes), "
                    "finished_at = CASE WHEN :complete THEN now() ELSE finished_at END, "
                    "measured_run_id = :r, measured_at = now() WHERE exposure_id = :e"
                ),
                {"r": run_id, "band": meta.band, "epoch": meta.epoch, "exptime": meta.exptime,
                 "psf": meta.psf_fwhm, "zp": meta.zero_point, "mjd": meta.mjd, "nan": meta.nan_fraction,
                 "checksum": meta.checksum, "size": meta.size_bytes, "complete": complete, "add": other_done,
                 "n": n_total, "d": timings.get("download_s"), "m": timings.get("measure_s"),
                 "w": time.perf_counter() - start, "e": exposure_id},
            )
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"exposure_id={exposure_id}: writing {rows.n} measurements failed "
                            f"and was rolled back: {exc.orig}") from None
    except engine.dialect.loaded_dbapi.Error as exc:  # the COPY runs on the driver's cursor
        raise DatabaseError(f"exposure_id={exposure_id}: writing {rows.n} measurements failed "
                            f"and was rolled back: {exc}") from None
    return rows.n
