"""Periodic LUMOS adaptation on the survey's own exposures: a registered candidate with its evidence.

:func:`retrain_candidate` does, without Airflow, what the ``lumos_retrain`` DAG schedules:

1. select the exposures measured (status ``done``) in the last ``nights`` nights;
2. fetch them and the catalogue through the download cache;
3. run :func:`lumos_ops.lumos.adapt.adapt` on them from the current model: a seeded split by
   exposure, TEAHUPOO stamps on the training exposures' backgrounds under the reference flux
   prior, fine-tuning of all layers (or the last) with the eq. (11)/(12) pair term where galaxies
   repeat, and injection-recovery on the held-out exposures for the base model, the candidate
   and the classical methods (docs/adapt.md);
4. upload the checkpoint to ``<prefix>/<version>.pt`` and its injection report to
   ``<prefix>/<version>.injection_report.json``, register ``<version>`` in
   ``lumos.model_versions`` as a *candidate* (status column) with its object key, and attach the
   report so that the registry's gates can decide (``lumos model promote``, docs/registry.md).
   The metadata carries the error floors the candidate measured on the training exposures
   (``error_floors``; a floor the stage could not measure is left out), the survey's name (``survey``) and ``survey_key``: the survey file with
   them, uploaded to ``<prefix>/<version>.survey.json``. Once promoted, the nightly run measures
   every method with those floors (``registry.production_config``); nothing needs editing.
   A database role that may only insert versions (the pipeline's ``lumos_writer``) cannot attach
   it: the run then logs the ``lumos model attach-report`` command for an operator.

Nothing is promoted automatically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.lumos.adapt import AdaptConfig
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.keys import validate_key
from lumos_ops.pipeline.registry import RegistryPermissionError, attach_report, production_version, register_candidate
from lumos_ops.pipeline.storage import DownloadCache, ObjectStore

__all__ = ["RetrainConfig", "RetrainResult", "retrain_candidate", "select_training_exposures"]

log = logging.getLogger(__name__)


def _default_adapt() -> AdaptConfig:
    return AdaptConfig(progress=False)


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """What a retraining run does.

    Attributes
    ----------
    nights : int
        Look-back window: exposures of the ``nights`` nights up to and including ``until``.
    base_model : str or None
        Checkpoint path or shipped-model name to start from (None: the registry's production LUMOS
        version, fetched from the object store and checked against its SHA-256; the shipped
        default when there is none).
    candidate_prefix : str
        Object-store prefix of the candidate checkpoints and their reports.
    adapt : AdaptConfig
        Options of :func:`lumos_ops.lumos.adapt.adapt` (split, training set, fine-tuning, injection).
    """

    nights: int = 30
    base_model: str | None = None
    candidate_prefix: str = "models/candidates"
    adapt: AdaptConfig = dataclasses.field(default_factory=_default_adapt)

    def __post_init__(self) -> None:
        if self.nights < 1:
            raise LumosValueError(f"RetrainConfig.nights must be >= 1, got {self.nights}")
        validate_key(self.candidate_prefix, what="candidate_prefix")


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """A registered candidate.

    Attributes
    ----------
    model_version : str
    object_key : str
        Where the checkpoint is stored.
    report_key : str
        Where its injection report is stored.
    sha256 : str
        Of the weights (checked on load).
    n_exposures, n_train, n_heldout : int
        Exposures selected, used for training, held out for the injection.
    pairs : str
        The eq. (11) pairs used (or why there were none).
    report_attached : bool
        Whether the injection report was attached to the registry row (else an operator attaches it).
    targets_met : dict
        ``{population: [met, of]}`` of the likelihood targets in the candidate's report.
    """

    model_version: str
    object_key: str
    report_key: str
    sha256: str
    n_exposures: int
    n_train: int
    n_heldout: int
    pairs: str
    report_attached: bool
    targets_met: dict[str, list[int]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)


def select_training_exposures(engine: sa.Engine, *, until: dt.date, nights: int) -> list[str]:
    """Object keys of the exposures measured (``done``) in the ``nights`` nights up to ``until``."""
    first = until - dt.timedelta(days=nights - 1)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT object_key FROM lumos.exposures WHERE status = 'done' AND night BETWEEN :a AND :b "
                    "ORDER BY night, expnum, ccd"),
            {"a": first, "b": until},
        ).scalars().all()
    return list(rows)


def recorded_floors(record: dict[str, Any]) -> dict[str, Any]:
    """The floors (fractions) that ``lumos adapt``'s stage 5 record says were measured: a floor the
    stage fell back to (too few bright rows, no blended pairs, the stage skipped) is left out, so
    that a promotion keeps the survey file's there; the classical methods' own floors under
    ``method_error_floors`` and ``method_neighbour_error_floors``."""
    out: dict[str, Any] = {}
    if not record.get("measured"):
        return out
    for name, estimate in (("flux_error_floor", "flux"), ("neighbour_error_floor", "neighbour")):
        floor = (record.get(estimate) or {}).get("floor")
        if isinstance(floor, (int, float)) and math.isfinite(floor) and name in record:
            out[name] = float(record[name])
    for name, estimates in (("method_error_floors", "methods"), ("method_neighbour_error_floors", "neighbour_methods")):
        own = {m: float(e["floor"]) for m, e in (record.get(estimates) or {}).items()
               if isinstance(e.get("floor"), (int, float)) and math.isfinite(e["floor"])}
        if own:
            out[name] = own
    return out


def retrain_candidate(
    engine: sa.Engine,
    store: ObjectStore,
    night_config: NightConfig,
    config: RetrainConfig,
    *,
    until: dt.date,
    work_dir: str | os.PathLike[str],
) -> RetrainResult:
    """Adapt, validate and register a candidate LUMOS model with its injection report (module notes).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The photometry database (exposures to use; the model registry).
    store : ObjectStore
        Holds the exposures and the catalogue; receives the candidate checkpoint.
    night_config : NightConfig
        Catalogue key, download cache and survey (``LUMOS_SURVEY``) of the nightly pipeline.
    config : RetrainConfig
    until : datetime.date, keyword-only
        Last night of the window; also names the version (``<base>-ft<YYYYMMDD>``).
    work_dir : path-like, keyword-only
        Scratch directory (training set, checkpoint, injection); a rerun with the same one resumes.

    Raises
    ------
    LumosValueError
        No measured exposure in the window, or every band has a single exposure (nothing to hold out).
    """
    from lumos_ops.evaluation.injection_report import json_clean
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.adapt import adapt
    from lumos_ops.lumos.checkpoint import load_checkpoint

    keys = select_training_exposures(engine, until=until, nights=config.nights)
    if not keys:
        raise LumosValueError(
            f"no exposure measured between {until - dt.timedelta(days=config.nights - 1)} and {until}; "
            "run lumos_nightly first or widen RetrainConfig.nights"
        )
    cache = DownloadCache(night_config.resolved_cache_dir())
    paths = [str(cache.fetch(store, key)[0]) for key in keys]
    catalog = read_catalog(cache.fetch(store, night_config.catalog_key)[0])
    base_model, base_name, base_sha = _base_model(engine, store, cache, config)
    base = load_checkpoint(base_model, device="cpu")
    if base_sha and base.sha256 != base_sha:
        raise ModelError(f"{base_name}: the checkpoint's SHA-256 {base.sha256[:12]}... is not the registered "
                         f"{base_sha[:12]}...; the object store holds other weights than the registry names")
    work = Path(work_dir)
    result = adapt(paths, catalog, work / "adapt", config.adapt, base_model=base.path, survey=night_config.survey)
    by_cache = {os.path.realpath(p): k for p, k in zip(paths, keys)}
    split = {name: [by_cache.get(os.path.realpath(p), p) for p in part]
             for name, part in (("train", result.train_exposures), ("heldout", result.heldout_exposures))}
    base_label = base_name or config.base_model or "the shipped default"
    base_name = re.sub(r"(-ft\d{8}(\.\d+)?)+$", "", base_name or Path(base.path).stem)
    version = _free_version(engine, f"{base_name}-ft{until:%Y%m%d}")
    prefix = config.candidate_prefix.rstrip("/")
    key, report_key = f"{prefix}/{version}.pt", f"{prefix}/{version}.injection_report.json"
    # the worker's download cache and work folder are gone after the task: record keys and versions
    where = {**by_cache, os.path.realpath(base.path): base_label, os.path.realpath(result.model_path): key}
    report = json_clean(_paths_as_keys({**result.report, "command": "lumos_retrain", "exposure_keys": split}, where))
    store.put_file(key, result.model_path)
    store.put_bytes(report_key, json.dumps(report, allow_nan=False).encode(), content_type="application/json")
    survey_file = Path(result.model_path).parent / "survey.json"  # the survey with the measured floors
    survey_key = f"{prefix}/{version}.survey.json" if survey_file.is_file() else None
    if survey_key:
        store.put_file(survey_key, survey_file)
    targets: dict[str, list[int]] = {}
    for row in report["targets"]:
        met = targets.setdefault(row["population"], [0, 0])
        met[0] += int(bool(row["met"]))
        met[1] += 1
    info = report["adapt"]["training"]
    register_candidate(
        engine, model_version=version, method="lumos", kind="lumos", checksum=result.model_sha256, object_key=key,
        metadata={"status": "candidate", "base_model": base_label, "base_sha256": base.sha256,
                  "until": until.isoformat(), "nights": config.nights, "report_key": report_key,
                  "n_exposures": len(paths), "train_exposures": split["train"], "heldout_exposures": split["heldout"],
                  "pairs": info["pairs"], "targets_met": targets,
                  "error_floors": recorded_floors(report["adapt"].get("error_floor") or {}),
                  "survey": night_config.survey.name, "survey_key": survey_key},
    )
    try:
        attach_report(engine, version, report, source=report_key)
        attached = True
    except RegistryPermissionError as exc:
        attached = False
        log.warning("candidate %s registered without its injection report (%s); an operator attaches it: "
                    "lumos model attach-report %s <report fetched from %s>", version, exc, version, report_key)
    out = RetrainResult(model_version=version, object_key=key, report_key=report_key, sha256=result.model_sha256,
                        n_exposures=len(paths), n_train=len(result.train_exposures),
                        n_heldout=len(result.heldout_exposures), pairs=info["pairs"], report_attached=attached,
                        targets_met=targets)
    log.info("candidate %s: %d training and %d held-out exposures (%s), targets met %s, stored at %s", version,
             out.n_train, out.n_heldout, out.pairs, targets, key)
    return out


def _paths_as_keys(value: Any, where: dict[str, str]) -> Any:
    """``value`` (JSON-like) with every string that names a file of ``where`` (by real path) replaced
    by what it stands for there (an object key, a model version)."""
    if isinstance(value, dict):
        return {k: _paths_as_keys(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_paths_as_keys(v, where) for v in value]
    if isinstance(value, str) and os.sep in value:
        return where.get(os.path.realpath(value), value)
    return value


def _base_model(engine: sa.Engine, store: ObjectStore, cache: DownloadCache,
                config: RetrainConfig) -> tuple[str | None, str | None, str | None]:
    """Checkpoint to start from (path or shipped name), its registered version and SHA-256.

    ``config.base_model`` when given; else the production LUMOS version of the registry (its
    object key fetched through the cache, or the shipped checkpoint of that name); else the
    shipped default (``None``).
    """
    from lumos_ops.lumos.checkpoint import SHIPPED_MODELS

    if config.base_model is not None:
        return config.base_model, None, None
    entry = production_version(engine, "lumos")
    if entry is None:
        return None, None, None
    if entry.object_key:
        model = str(cache.fetch(store, entry.object_key)[0])
    else:
        model = next((name for name, filename in SHIPPED_MODELS.items()
                      if Path(filename).stem == entry.model_version), None)
        if model is None:
            raise ModelError(f"the production LUMOS version {entry.model_version} has no object key and is not "
                             "a shipped checkpoint: give RetrainConfig.base_model")
    log.info("retraining from the production version %s (%s)", entry.model_version, entry.object_key or model)
    return model, entry.model_version, entry.checksum


def _free_version(engine: sa.Engine, version: str) -> str:
    """``version``, or ``version.2``, ``version.3``... when taken: registered versions are immutable,
    so a rerun of the same window registers its candidate under a new name."""
    with engine.connect() as conn:
        taken = set(conn.execute(sa.text("SELECT model_version FROM lumos.model_versions WHERE model_version = :v "
                                         "OR model_version LIKE :pattern"),
                                 {"v": version, "pattern": f"{version}.%"}).scalars())
    if version not in taken:
        return version
    n = 2
    while f"{version}.{n}" in taken:
        n += 1
    return f"{version}.{n}"
