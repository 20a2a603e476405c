"""Periodic LUMOS retraining on the survey's own exposures: a registered candidate model.

:func:`retrain_candidate` does, without Airflow, what the ``lumos_retrain`` DAG schedules:

1. select the exposures measured (status ``done``) in the last ``nights`` nights;
2. fetch them and the catalogue through the download cache;
3. cut a TEAHUPOO set on their backgrounds (paper §2.2: per-band fluxes from the seeded population,
   independent of the galaxy, so no catalogue photometry is needed);
4. transfer-learn the last layer of the current model with eq. (12): pairs of exposures of the same
   galaxy in the same band (eq. 11, §4.3) plus the supervised simulation term (§4.4);
5. upload the checkpoint to ``<prefix>/<version>.pt`` and register ``<version>`` in
   ``lumos.model_versions`` as a *candidate* (status column), with its object key, and in the
   metadata the width of the D statistic (eq. 19) before and after.

Nothing is promoted automatically: the candidate runs nightly once its injection report passes the
registry's gates (``lumos model attach-report``, ``lumos model promote``; ``docs/registry.md``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.lumos.transfer import TransferConfig
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.keys import validate_key
from lumos_ops.pipeline.registry import production_version, register_candidate
from lumos_ops.pipeline.storage import DownloadCache, ObjectStore

__all__ = ["RetrainConfig", "RetrainResult", "retrain_candidate", "select_training_exposures"]

log = logging.getLogger(__name__)


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
        Object-store prefix of the candidate checkpoints.
    n_sim : int
        TEAHUPOO stamps cut on the selected exposures for the supervised term.
    sim_seed : int
    transfer : TransferConfig
        Options of :func:`lumos_ops.lumos.transfer.transfer` (``max_sim`` is capped at ``n_sim``).
    """

    nights: int = 30
    base_model: str | None = None
    candidate_prefix: str = "models/candidates"
    n_sim: int = 20_000
    sim_seed: int = 0
    transfer: TransferConfig = dataclasses.field(
        default_factory=lambda: TransferConfig(epochs=20, batch_size=500, lr=1e-4, lr_step=10, progress=False)
    )

    def __post_init__(self) -> None:
        if self.nights < 1:
            raise LumosValueError(f"RetrainConfig.nights must be >= 1, got {self.nights}")
        if self.n_sim < 1:
            raise LumosValueError(f"RetrainConfig.n_sim must be >= 1, got {self.n_sim}")
        validate_key(self.candidate_prefix, what="candidate_prefix")


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """A registered candidate.

    Attributes
    ----------
    model_version : str
    object_key : str
        Where the checkpoint is stored.
    sha256 : str
        Of the weights (checked on load).
    n_exposures, n_pairs, n_sim : int
    d_sigma68_before, d_sigma68_after : float
        Width of the D statistic (eq. 19) of the pairs with the base model and the candidate
        (1 for perfectly calibrated errors).
    """

    model_version: str
    object_key: str
    sha256: str
    n_exposures: int
    n_pairs: int
    n_sim: int
    d_sigma68_before: float
    d_sigma68_after: float

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


def retrain_candidate(
    engine: sa.Engine,
    store: ObjectStore,
    night_config: NightConfig,
    config: RetrainConfig,
    *,
    until: dt.date,
    work_dir: str | os.PathLike[str],
) -> RetrainResult:
    """Transfer-learn and register a candidate LUMOS model (see the module notes).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The photometry database (exposures to use; the model registry).
    store : ObjectStore
        Holds the exposures and the catalogue; receives the candidate checkpoint.
    night_config : NightConfig
        Catalogue key and download cache of the nightly pipeline.
    config : RetrainConfig
    until : datetime.date, keyword-only
        Last night of the window; also names the version (``<base>-ft<YYYYMMDD>``).
    work_dir : path-like, keyword-only
        Scratch directory (simulations, checkpoint).

    Raises
    ------
    LumosValueError
        No measured exposure in the window, or no galaxy observed twice in the same band.
    """
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.transfer import transfer
    from lumos_ops.sim import TeahupooConfig, generate_training_set

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
    sim_dir = work / "teahupoo"
    generate_training_set(
        TeahupooConfig(n_stamps=config.n_sim, stamp_size=base.net.config.stamp_size, seed=config.sim_seed,
                       split_fractions=(1.0, 0.0, 0.0), flux_source="band_distribution", flux_population=50_000,
                       flux_count_slope=0.0, neighbour_fraction=0.3),
        paths, catalog, sim_dir,
    )
    options = dataclasses.replace(config.transfer, max_sim=min(config.transfer.max_sim, config.n_sim))
    metrics = transfer(base.path, paths, catalog, sim_dir, work / "model", options)
    base_name = re.sub(r"(-ft\d{8}(\.\d+)?)+$", "", base_name or Path(base.path).stem)
    version = _free_version(engine, f"{base_name}-ft{until:%Y%m%d}")
    key = f"{config.candidate_prefix.rstrip('/')}/{version}.pt"
    store.put_file(key, work / "model" / "model.pt")
    result = RetrainResult(
        model_version=version, object_key=key, sha256=metrics["model_sha256"], n_exposures=len(paths),
        n_pairs=metrics["n_pairs"], n_sim=metrics["n_sim"], d_sigma68_before=metrics["d_sigma68_before"],
        d_sigma68_after=metrics["d_sigma68_after"],
    )
    # metadata.status is kept for readers of the pre-V005 registry; the status column decides.
    register_candidate(
        engine, model_version=version, method="lumos", kind="lumos", checksum=result.sha256, object_key=key,
        metadata={"status": "candidate", "base_model": base.path, "base_sha256": base.sha256,
                  "until": until.isoformat(), "nights": config.nights, **result.to_dict()},
    )
    log.info("candidate %s: %d pairs from %d exposures, D width %.3f -> %.3f, stored at %s", version,
             result.n_pairs, result.n_exposures, result.d_sigma68_before, result.d_sigma68_after, key)
    return result


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
