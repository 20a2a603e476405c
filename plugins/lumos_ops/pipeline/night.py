"""The steps of a night, as plain functions that run with or without Airflow.

``plan_night`` (discover + register) -> ``process_exposure`` for each planned CCD image (download,
validate, measure, write) -> ``finish_night`` (recover interrupted exposures, co-add, report).
:func:`run_night` chains them in one process; the ``lumos_nightly`` DAG runs the same functions as
Airflow tasks, mapped over chunks of exposures. With LUMOS inference on GPU workers and classical
methods besides, the DAG measures in two steps (``step`` of :func:`process_chunk`): ``process``
(the classical methods, CPU workers, in parallel) and then ``lumos`` (the network, on the GPU
workers behind the GPU pool); each step writes its own rows, and an exposure is done once both
have written in its run.

Failures never delete measurements: a failed attempt records its error and the exposure keeps the
rows of its last successful write (stale) until a later success replaces them. An exposure
measured again after its night was reported (an operator cleared only that task) refreshes the
co-adds of its sources and the report itself, so whatever is rerun, the database, the co-adds and
the report agree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from lumos_ops import __version__
from lumos_ops.exceptions import NOT_RETRYABLE, BadInputError, CatalogError, DatabaseError, InputFileError, LumosError, ModelError
from lumos_ops.pipeline.config import LUMOS_METHODS, NightConfig
from lumos_ops.pipeline.database import check_schema, connection_lost
from lumos_ops.pipeline.keys import KeyTemplate, validate_night
from lumos_ops.pipeline.plan import ExposureResult, ExposureTask, NightPlan, NightReport
from lumos_ops.pipeline.storage import DownloadCache, ObjectStore, open_store
from lumos_ops.pipeline.writer import (
    ExposureMeta,
    ModelVersion,
    finish_run,
    load_catalog,
    mark_failed,
    mark_running,
    recover_interrupted,
    register_exposures,
    register_model_versions,
    start_run,
    write_measurements,
)
from lumos_ops.sim.threads import torch_threads

__all__ = [
    "code_version",
    "finish_night",
    "open_night_store",
    "plan_night",
    "process_chunk",
    "attempt_each",
    "process_exposure",
    "run_night",
    "Measurer",
]

log = logging.getLogger(__name__)

Measurer = Callable[..., pd.DataFrame]
"""Signature of ``lumos_ops.measure.measure_exposure(exposure, catalog, *, methods, **options)``."""


@functools.cache
def code_version() -> str:
    """``lumos-ops <version>`` plus the git commit when known (``$LUMOS_CODE_VERSION`` overrides)."""
    if os.environ.get("LUMOS_CODE_VERSION"):
        return os.environ["LUMOS_CODE_VERSION"]
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"lumos-ops {__version__}" + (f"+g{sha}" if sha else "")


def open_night_store(config: NightConfig, *, client: Any | None = None) -> ObjectStore:
    """The object store of ``config`` (an optional pre-built S3 client, e.g. from Airflow's S3Hook); a
    local store's directory must exist."""
    return open_store(config.store_url, endpoint_url=config.endpoint_url, region=config.region, client=client,
                      create=False)


@contextlib.contextmanager
def closed_on_failure(engine: sa.Engine, run_id: int) -> Iterator[None]:
    """Close run ``run_id`` as ``failed`` when the block raises, then let the error go on: a run that
    stopped early is never left ``running``. When the database itself is gone the run stays open;
    ``lumos night recover`` closes it later."""
    try:
        yield
    except BaseException:
        try:
            finish_run(engine, run_id, status="failed")
        except sa.exc.DBAPIError as exc:
            log.warning("run %d could not be closed as failed (%s); `lumos night recover --runs-older-than` "
                        "closes it", run_id, connection_lost(exc) or type(exc.orig).__name__)
        raise


def plan_night(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    *,
    night: str,
    dag_id: str = "lumos-cli",
    dag_run_id: str,
) -> NightPlan:
    """Discover the night's exposures, load the catalogue and register everything in the database.

    The model versions the run uses are resolved here (``lumos_ops.pipeline.registry.production_config``:
    an explicitly configured version or checkpoint, else the registry's production version, else
    the shipped default) and recorded in the run's settings; every later task of the run uses those
    (``pinned_config``), so a promotion during a night never mixes versions within it.

    Parameters
    ----------
    night : str
        ``YYYY-MM-DD``.
    dag_id, dag_run_id : str
        Provenance of the run (Airflow's ids, or ``lumos-cli`` and a generated id).

    Returns
    -------
    NightPlan
        One task per CCD image found under the key template; keys under the night's prefix that
        do not follow the template are listed in ``skipped_keys``. An empty plan means nothing to do.

    Raises
    ------
    DatabaseError
        The schema is not current (run ``lumos db upgrade``).
    StorageError, CatalogError, InputFileError
        The store cannot be listed or the catalogue is missing or invalid.
    """
    from lumos_ops.pipeline.registry import production_config

    night = validate_night(night)
    config.check_methods()
    check_schema(engine)
    config = production_config(engine, config)
    run_id = start_run(engine, dag_id=dag_id, dag_run_id=dag_run_id, night=night, code_version=code_version(),
                       settings=config.to_dict())
    with closed_on_failure(engine, run_id):
        return _plan(engine, store, config, night=night, run_id=run_id)


def _plan(engine: sa.Engine, store: ObjectStore, config: NightConfig, *, night: str, run_id: int) -> NightPlan:
    """:func:`plan_night` once its run is open: list, load the catalogue, register."""
    from lumos_ops.io.catalog import read_catalog

    template = KeyTemplate(config.key_template)
    found, skipped = [], []
    for info in store.list(template.prefix(night)):
        parsed = template.parse(info.key)
        if parsed is None or parsed.night != night:
            skipped.append(info.key)
        else:
            found.append((parsed, info))
    for key in skipped:
        log.warning("%s: does not follow the key template %s; ignored", key, config.key_template)
    if not found:
        log.info("night %s: no exposures under %s (store %s): nothing to do", night,
                 store.object_url(template.prefix(night)), store.describe())
        return NightPlan(night=night, run_id=run_id, tasks=(), skipped_keys=tuple(skipped))
    register_model_versions(engine, [
        ModelVersion(model_version=config.model_version(m), method=m,
                     kind="lumos" if m in LUMOS_METHODS else "classical")
        for m in config.methods
    ], overwrite=False)
    cache = DownloadCache(config.resolved_cache_dir())
    catalog_path, catalog_info, _ = cache.fetch(store, config.catalog_key)
    try:
        catalog = read_catalog(catalog_path)
    except (CatalogError, InputFileError) as exc:  # name the object, not the download cache's copy
        raise type(exc)(str(exc).replace(str(catalog_path), store.object_url(config.catalog_key))) from None
    n_loaded = load_catalog(engine, catalog, checksum=catalog_info.checksum)
    log.info("catalogue %s (%s): %d rows loaded", config.catalog_key, catalog_info.checksum, n_loaded)
    dropped = sources_dropped(engine, night, catalog_info.checksum)
    if dropped:
        log.warning("catalogue %s lacks %d source(s) measured before on night %s (ref_id %s%s): measuring the "
                    "night again drops their rows, and their co-adds stay as they were; if the catalogue is "
                    "incomplete, upload it whole and run the night again", store.object_url(config.catalog_key),
                    len(dropped), night, ", ".join(map(str, dropped[:5])), ", ..." if len(dropped) > 5 else "")
    rows = [{"key": p.key, "night": night, "expnum": p.expnum, "ccd": p.ccd, "size": i.size, "checksum": i.checksum}
            for p, i in found]
    ids = register_exposures(engine, rows, run_id=run_id)
    tasks = tuple(
        ExposureTask(exposure_id=eid, key=row["key"], night=night, expnum=row["expnum"], ccd=row["ccd"],
                     size=row["size"], checksum=row["checksum"], run_id=run_id, catalog_key=config.catalog_key,
                     catalog_checksum=catalog_info.checksum)
        for eid, row in zip(ids, rows)
    )
    log.info("night %s: %d exposures registered (run %d)", night, len(tasks), run_id)
    gone = _gone_from_store(engine, night, [row["key"] for row in rows])
    if gone:
        log.warning("night %s: %d exposure(s) measured before are no longer in %s (%s%s): not measured again; "
                    "their rows and the co-adds that use them stay as they were", night, len(gone), store.describe(),
                    ", ".join(gone[:3]), ", ..." if len(gone) > 3 else "")
    return NightPlan(night=night, run_id=run_id, tasks=tasks, skipped_keys=tuple(skipped))


def _gone_from_store(engine: sa.Engine, night: str, listed: Sequence[str]) -> list[str]:
    """Object keys of the night's registered exposures that the store's listing no longer holds."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT object_key FROM lumos.exposures WHERE night = :night AND NOT (object_key = ANY(:listed)) "
            "ORDER BY expnum, ccd"), {"night": night, "listed": list(listed)}).scalars())


def sources_dropped(engine: sa.Engine, night: str, checksum: str) -> list[int]:
    """The ``ref_id``s with measurements on ``night`` that the catalogue of ``checksum`` (the one just
    loaded) does not list: their ``lumos.catalog_sources`` rows still carry an earlier catalogue's."""
    with engine.connect() as conn:
        return [int(r) for r in conn.execute(sa.text(
            "SELECT DISTINCT m.ref_id FROM lumos.measurements AS m "
            "JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id "
            "JOIN lumos.catalog_sources AS s ON s.ref_id = m.ref_id "
            "WHERE e.night = :night AND s.catalog_checksum <> :c ORDER BY m.ref_id"),
            {"night": night, "c": checksum}).scalars()]


def _default_measurer() -> Measurer:
    from lumos_ops.measure import measure_exposure

    return measure_exposure


_CACHED_LUMOS_OPTIONS = frozenset({"model", "device"})


def _measure_call(measurer: Measurer | None, methods: Sequence[str],
                  options: dict[str, Any]) -> tuple[Measurer, dict[str, Any]]:
    """The measurer and its keyword arguments; the default measurer gets the LUMOS method of this
    process's cache (``worker_cache``), so consecutive exposures reuse the loaded model."""
    if measurer is not None:
        return measurer, options
    lumos = [m for m in methods if m in LUMOS_METHODS]
    if not lumos or not set(options) <= _CACHED_LUMOS_OPTIONS:
        return _default_measurer(), options
    from lumos_ops.pipeline import worker_cache

    method = worker_cache.lumos_method(options.get("model"), device=options.get("device"))
    return _default_measurer(), {"instances": {name: method for name in lumos}}


@functools.lru_cache(maxsize=8)
def _checkpoint_checksums(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    """The checkpoint at ``path``'s weights checksum (``lumos adapt`` and ``lumos_retrain`` register
    it) and its file's SHA-256 (what a checksum tool gives), cached per file version."""
    import hashlib

    from lumos_ops.lumos.checkpoint import load_checkpoint

    with open(path, "rb") as handle:
        whole = hashlib.file_digest(handle, "sha256").hexdigest()
    return load_checkpoint(path, device="cpu").sha256, whole


def _check_weights(path: str, config: NightConfig) -> None:
    """Refuse a fetched LUMOS checkpoint that is not the registered one (``model_sha256``: its
    weights' checksum or its file's)."""
    if not config.model_sha256:
        return
    stat = os.stat(path)
    checksums = _checkpoint_checksums(path, stat.st_size, stat.st_mtime_ns)
    if config.model_sha256 not in checksums:
        found = checksums[0]
        raise ModelError(f"{config.model_key}: its weights are {found[:12]}, but the registered version "
                         f"{config.model_version('lumos')} is {config.model_sha256[:12]}; restore the object or "
                         "register the new weights as a new version")


def _validate(exposure: Any, task: ExposureTask, config: NightConfig) -> None:
    if exposure.nan_fraction > config.max_nan_fraction:
        raise InputFileError(
            f"{task.key}: {exposure.nan_fraction:.0%} of the pixels are NaN (max_nan_fraction="
            f"{config.max_nan_fraction:g}); the reduction masked too much of this CCD, re-reduce it"
        )
    for name, header_value, key_value in (("EXPNUM", exposure.expnum, task.expnum), ("CCDNUM", exposure.ccdnum, task.ccd)):
        if header_value is not None and header_value != key_value:
            raise InputFileError(
                f"{task.key}: header {name}={header_value} disagrees with the object key ({key_value}); "
                "the file is stored under the wrong key"
            )


@dataclasses.dataclass
class MeasuredExposure:
    """One CCD image measured, not yet written: the measurement table, its header values, timings (s)."""

    task: ExposureTask
    table: pd.DataFrame | None = None
    meta: ExposureMeta | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    downloaded: bool = False


class MeasureError(LumosError):
    """:func:`measure_task` failed; the message names the object key, ``original`` is the error
    (re-raised with that message when it is a LumosError), with the timings and band known so far."""

    def __init__(self, message: str, *, original: BaseException, timings: dict[str, float],
                 band: str | None) -> None:
        super().__init__(message)
        self.original = original
        self.timings = timings
        self.band = band


def _message(exc: BaseException, task: ExposureTask, path: Path | None) -> str:
    message = str(exc) if isinstance(exc, LumosError) else f"{type(exc).__name__}: {exc}"
    if path is not None:
        message = message.replace(str(path), task.key)
    return message if message.startswith(task.key) else f"{task.key}: {message}"


def measure_task(store: ObjectStore, config: NightConfig, task: ExposureTask, *,
                 measurer: Measurer | None = None, methods: Sequence[str] | None = None) -> MeasuredExposure:
    """Download (through the checksum-named cache), validate and measure one CCD image with
    ``methods`` (default: every configured method).

    Raises
    ------
    MeasureError
        Anything failed; its message names the object key and its ``original`` is the error
        (a LumosError re-created with that message, so callers keep its kind).
    """
    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.pipeline import worker_cache

    methods = tuple(methods or config.methods)
    measured = MeasuredExposure(task=task)
    cache = DownloadCache(config.resolved_cache_dir())
    path = exposure = None
    try:
        start = time.perf_counter()
        path, info, measured.downloaded = cache.fetch(store, task.key)
        if info.checksum != task.checksum:
            log.info("%s changed since it was registered (checksum %s -> %s): measuring the current version",
                     task.key, task.checksum, info.checksum)
        catalog_path, catalog_info, _ = cache.fetch(store, task.catalog_key)
        measured.timings["download_s"] = time.perf_counter() - start
        start = time.perf_counter()
        exposure = read_exposure(path, survey=config.survey, label=task.key)
        _validate(exposure, task, config)
        catalog = worker_cache.catalog(catalog_path)
        options = dict(config.measure_options)
        if config.model_key is not None and any(m in LUMOS_METHODS for m in methods):
            options["model"] = str(cache.fetch(store, config.model_key)[0])
            _check_weights(options["model"], config)
        if methods != config.methods:
            from lumos_ops.measure import options_for

            options = options_for(methods, options)
        measure, options = _measure_call(measurer, methods, options)
        with torch_threads(config.threads):
            measured.table = measure(exposure, catalog, methods=methods, **options)
        measured.timings["measure_s"] = time.perf_counter() - start
        measured.meta = ExposureMeta(band=exposure.band, epoch=exposure.epoch, exptime=exposure.exptime,
                                     psf_fwhm=exposure.psf_fwhm, zero_point=exposure.zero_point, mjd=exposure.mjd,
                                     nan_fraction=exposure.nan_fraction, checksum=info.checksum, size_bytes=info.size)
    except Exception as exc:
        message = _message(exc, task, path)
        original: BaseException = exc
        if isinstance(exc, LumosError) and str(exc) != message:
            original = type(exc)(message)
            original.__cause__ = exc
        raise MeasureError(message, original=original, timings=measured.timings,
                           band=exposure.band if exposure is not None else None) from exc
    return measured


def _record_failure(engine: sa.Engine, task: ExposureTask, message: str, timings: dict[str, float],
                    band: str | None, *, attempts: int = 3, wait_s: float = 2.0) -> None:
    """:func:`mark_failed`, retried while the database is unreachable; when it stays unreachable the
    exposure is left ``running`` and :func:`recover_interrupted` records it later."""
    for attempt in range(1, attempts + 1):
        try:
            mark_failed(engine, task.exposure_id, run_id=task.run_id, error=message, timings=timings, band=band)
            return
        except sa.exc.DBAPIError as exc:
            if attempt == attempts:
                log.error("exposure %s: could not record its failure (%s); it stays 'running' until the night's "
                          "co-add step (or `lumos night recover`) marks it interrupted", task.label, exc.orig)
                return
            time.sleep(wait_s * 2 ** (attempt - 1))


def _run_closed(engine: sa.Engine, run_id: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.text("SELECT finished_at IS NOT NULL FROM lumos.pipeline_runs WHERE run_id = :r"),
                                 {"r": run_id}).scalar())


def process_exposure(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    task: ExposureTask,
    *,
    measurer: Measurer | None = None,
    step: str | None = None,
) -> ExposureResult:
    """Download, validate, measure and write one CCD image (or one step of it).

    On any error the attempt is recorded as failed with the message and the error is raised again,
    so the caller (an Airflow mapped task) fails too; measurements of an earlier successful write
    of this exposure are kept. The model versions are those the run's plan resolved. When the night was already reported (this exposure is a rerun after
    the run closed), the co-adds of its sources and the night's report are refreshed.

    Parameters
    ----------
    task : ExposureTask
        From :func:`plan_night`.
    measurer : callable, optional
        ``measure_exposure``-compatible function (default ``lumos_ops.measure.measure_exposure``
        with this process's cached LUMOS model).
    step : {None, "classical", "lumos"}, keyword-only
        None measures every configured method at once. A night whose methods include LUMOS and
        others may measure them in two steps (``NightConfig.step_methods``; the DAG's ``process``
        on CPU workers, then ``lumos`` on the LUMOS queue): each step writes its methods' rows, and
        the exposure is done once every method has rows of this run (see :func:`_step_may_start`
        for the status while a step runs).

    Returns
    -------
    ExposureResult
        ``status="done"``, the number of rows written and the timings (s).
    """
    from lumos_ops.pipeline.registry import pinned_config

    config = pinned_config(engine, config, task.run_id)
    methods = config.step_methods(step)
    split = set(methods) != set(config.methods)
    versions = {m: config.model_version(m) for m in config.methods}
    if not split or _step_may_start(engine, task, {m: v for m, v in versions.items() if m not in methods}):
        mark_running(engine, task.exposure_id, run_id=task.run_id, worker=f"{socket.gethostname()}:{os.getpid()}")
    measured = MeasuredExposure(task=task)
    try:
        measured = measure_task(store, config, task, measurer=measurer, methods=methods)
        start = time.perf_counter()
        n = write_measurements(engine, measured.table, exposure_id=task.exposure_id, run_id=task.run_id,
                               meta=measured.meta, model_versions={m: versions[m] for m in methods},
                               timings=measured.timings, run_versions=versions if split else None)
        measured.timings["write_s"] = time.perf_counter() - start
    except MeasureError as exc:
        _record_failure(engine, task, str(exc), exc.timings, exc.band)
        log.error("exposure %s failed: %s", task.label, exc)
        raise exc.original from exc.original.__cause__
    except Exception as exc:
        message = _message(exc, task, None)
        _record_failure(engine, task, message, measured.timings, measured.meta.band if measured.meta else None)
        log.error("exposure %s failed: %s", task.label, message)
        raise
    timings, downloaded = measured.timings, measured.downloaded
    log.info("exposure %s: %d measurements (download %.2f s, measure %.2f s, write %.2f s)", task.label, n,
             timings["download_s"], timings["measure_s"], timings["write_s"])
    if _run_closed(engine, task.run_id):
        refresh_after_rerun(engine, store, config, task)
    return ExposureResult(exposure_id=task.exposure_id, key=task.key, status="done", n_measurements=n,
                          downloaded=downloaded, **timings)


def _step_may_start(engine: sa.Engine, task: ExposureTask, others: dict[str, str]) -> bool:
    """Whether a step may mark the exposure ``running``: not when it is ``failed`` and the other
    step's methods (``others``, ``{method: version}``) have no fresh rows, i.e. the other step
    failed in this run. That failure then stands (the exposure is not done whatever this step
    does) until the other step succeeds; this step still writes its own rows."""
    from lumos_ops.pipeline.writer import fresh_methods

    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM lumos.exposures WHERE exposure_id = :e"),
                              {"e": task.exposure_id}).scalar()
        if status != "failed":
            return True
        return fresh_methods(conn, exposure_id=task.exposure_id, run_id=task.run_id, versions=others) >= set(others)


def _done_in_run(engine: sa.Engine, config: NightConfig, tasks: Sequence[ExposureTask], step: str | None) -> set[int]:
    """Exposures of ``tasks`` whose ``step`` is done in their run: the exposure is ``done`` (one
    step), or every method of the step has rows of this run (a step of a split night)."""
    if not tasks:
        return set()
    ids, run_id = [t.exposure_id for t in tasks], tasks[0].run_id
    methods = config.step_methods(step)
    with engine.connect() as conn:
        if set(methods) == set(config.methods):
            return set(conn.execute(sa.text(
                "SELECT exposure_id FROM lumos.exposures WHERE exposure_id = ANY(:ids) AND status = 'done' AND run_id = :r"
            ), {"ids": ids, "r": run_id}).scalars())
        return set(conn.execute(sa.text(
            "SELECT exposure_id FROM lumos.measurements WHERE exposure_id = ANY(:ids) AND run_id = :r "
            "AND method = ANY(:methods) GROUP BY exposure_id HAVING count(DISTINCT method) = :k"
        ), {"ids": ids, "r": run_id, "methods": list(methods), "k": len(methods)}).scalars())


def process_chunk(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    tasks: Sequence[ExposureTask],
    *,
    measurer: Measurer | None = None,
    step: str | None = None,
) -> list[ExposureResult]:
    """:func:`process_exposure` for consecutive exposures of one run (one mapped Airflow task),
    resumable: exposures whose ``step`` is already done in this run are skipped, so a retry or a
    cleared chunk measures only what is left. Every exposure is attempted whatever fails before it.

    Returns
    -------
    list of ExposureResult
        One per exposure (``status`` ``done`` or ``skipped``).

    Raises
    ------
    BadInputError
        Every failure was an input error (retrying cannot help); the message lists them.
    LumosError
        At least one failure may be transient (storage, database): a retry resumes the chunk.
    """
    done = _done_in_run(engine, config, tasks, step)

    def one(task: ExposureTask) -> ExposureResult:
        if task.exposure_id in done:
            log.info("exposure %s: %s already done in run %d, skipped", task.label, step or "measuring", task.run_id)
            return ExposureResult(exposure_id=task.exposure_id, key=task.key, status="skipped")
        return process_exposure(engine, store, config, task, measurer=measurer, step=step)

    return attempt_each(tasks, one)


def attempt_each(tasks: Sequence[ExposureTask], step: Callable[[ExposureTask], ExposureResult]) -> list[ExposureResult]:
    """``step`` for every task, whatever fails before it; then raise if any failed.

    Raises
    ------
    BadInputError
        Every failure was an input error (retrying cannot help); the message lists them.
    LumosError
        At least one failure may be transient (storage, database): a retry resumes.
    """
    results: list[ExposureResult] = []
    failures: list[tuple[ExposureTask, BaseException]] = []
    for task in tasks:
        try:
            results.append(step(task))
        except Exception as exc:  # noqa: BLE001 - listed below; the others go on
            failures.append((task, getattr(exc, "original", exc)))
    if failures:
        lines = "; ".join(str(exc) if str(exc).startswith(task.key) else f"{task.key}: {exc}"
                          for task, exc in failures)
        message = f"{len(failures)} of {len(tasks)} exposures failed: {lines}"
        if all(isinstance(exc, NOT_RETRYABLE) for _, exc in failures):  # bad inputs, a wrong checkpoint
            raise BadInputError(message)
        raise LumosError(message + " (a retry measures only the exposures not done)")
    return results


def refresh_after_rerun(engine: sa.Engine, store: ObjectStore, config: NightConfig, task: ExposureTask) -> None:
    """Co-add the night again and rewrite its report and run record.

    Used when an exposure is measured after its night was reported, so that a rerun of one task
    (whatever the operator cleared downstream) leaves co-adds and report matching the database.
    The whole night is co-added, not only this exposure's sources: a failure of unknown band had
    marked every band's co-adds partial.
    """
    from lumos_ops.pipeline.coadd import coadd_night
    from lumos_ops.pipeline.report import report_night

    coadd = coadd_night(engine, night=task.night, run_id=task.run_id,
                        outlier_fraction=config.survey.coadd_outlier_fraction)
    report = report_night(engine, store, config, night=task.night, run_id=task.run_id, coadd=coadd)
    log.info("exposure %s was measured after night %s was reported: %d co-adds and the report (%s) refreshed",
             task.label, task.night, coadd.n_coadds, report.status)


def finish_night(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    *,
    night: str,
    run_id: int,
    wall_s: float | None = None,
    extra_timings: dict[str, float] | None = None,
) -> NightReport:
    """Close a night once every exposure task has ended: recover, co-add, report.

    Exposures of this run still ``running`` belong to tasks that died without recording a result;
    they are marked failed (:func:`recover_interrupted`, rows kept) before the co-add, so the
    co-adds and the report count them.
    """
    from lumos_ops.pipeline.coadd import coadd_night
    from lumos_ops.pipeline.report import report_night, run_found_exposures

    with closed_on_failure(engine, run_id):
        for key in recover_interrupted(engine, run_id=run_id):
            log.warning("%s: left running by a task that ended without recording a result; marked failed", key)
        if not run_found_exposures(engine, night, run_id):  # nothing measured: the night's co-adds stand
            return report_night(engine, store, config, night=night, run_id=run_id, wall_s=wall_s,
                                extra_timings=extra_timings)
        coadd = coadd_night(engine, night=night, run_id=run_id, outlier_fraction=config.survey.coadd_outlier_fraction)
        return report_night(engine, store, config, night=night, run_id=run_id, coadd=coadd, wall_s=wall_s,
                            extra_timings=extra_timings)


def run_night(
    engine: sa.Engine,
    store: ObjectStore,
    config: NightConfig,
    *,
    night: str,
    dag_run_id: str,
    measurer: Measurer | None = None,
) -> NightReport:
    """Plan, process every exposure (a failure does not stop the others), co-add and report.

    This is ``lumos night run --no-airflow``: the same steps as the DAG, in one process. Two such
    runs of one night take turns (an advisory lock on the night, :data:`~lumos_ops.pipeline.locks.RUN_LOCK`):
    the second waits for the first to close, then runs the night again, so neither reports the
    night while the other is still writing it.
    """
    from lumos_ops.pipeline.locks import RUN_LOCK, night_lock
    from lumos_ops.pipeline.report import report_night

    start = time.perf_counter()
    with night_lock(engine, validate_night(night), RUN_LOCK):
        plan = plan_night(engine, store, config, night=night, dag_run_id=dag_run_id)
        plan_s = time.perf_counter() - start
        if plan.empty:
            return report_night(engine, store, config, night=plan.night, run_id=plan.run_id,
                                wall_s=time.perf_counter() - start, extra_timings={"plan_s": plan_s})
        with closed_on_failure(engine, plan.run_id):
            for i, task in enumerate(plan.tasks):
                try:
                    process_exposure(engine, store, config, task, measurer=measurer)
                except Exception as exc:  # noqa: BLE001 - recorded in the database by process_exposure
                    reason = connection_lost(exc)
                    if reason is None:  # this exposure's failure: go on with the others
                        continue
                    raise DatabaseError(
                        f"night {plan.night}: the database was lost while measuring {task.label} ({reason}); "
                        f"{len(plan.tasks) - i} of {len(plan.tasks)} exposures were not written (those written "
                        "are kept): run the night again once the database is back") from None
        return finish_night(engine, store, config, night=plan.night, run_id=plan.run_id,
                            wall_s=time.perf_counter() - start, extra_timings={"plan_s": plan_s})
