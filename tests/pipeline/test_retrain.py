"""Periodic retraining: a candidate from the survey's own exposures, registered, then promoted."""

import datetime as dt

import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.transfer import TransferConfig
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.night import run_night
from lumos_ops.pipeline.retrain import RetrainConfig, retrain_candidate, select_training_exposures
from lumos_ops.pipeline.storage import LocalObjectStore

from nightdata import make_catalog, write_catalog, write_night

pytestmark = pytest.mark.postgres
NIGHT = "2026-11-20"


def test_candidate_is_trained_registered_and_runs_nightly(engine, tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(12)
    write_catalog(store.put_bytes, catalog)
    write_night(store.put_bytes, NIGHT, n_exposures=3, n_ccds=1, catalog=catalog)  # 3 exposures, one band
    night = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    assert run_night(engine, store, night, night=NIGHT, dag_run_id="n1").n_done == 3
    until = dt.date(2026, 11, 21)
    assert len(select_training_exposures(engine, until=until, nights=2)) == 3
    assert select_training_exposures(engine, until=dt.date(2026, 11, 19), nights=30) == []

    config = RetrainConfig(nights=2, n_sim=300, transfer=TransferConfig(epochs=2, batch_size=64, lr=1e-4, progress=False))
    result = retrain_candidate(engine, store, night, config, until=until, work_dir=tmp_path / "work")
    assert result.model_version.endswith("-ft20261121") and result.n_exposures == 3
    assert result.n_pairs >= 12 and result.n_sim == 300  # each source seen 3 times: 3 pairs per source
    assert 0 < result.d_sigma68_before < 100 and 0 < result.d_sigma68_after < 100
    loaded = load_checkpoint(store.local_path(result.object_key), device="cpu")  # SHA-256 verified
    assert loaded.sha256 == result.sha256 and loaded.metadata["transfer"]["n_pairs"] == result.n_pairs
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT method, kind, checksum, metadata FROM lumos.model_versions "
                                   "WHERE model_version = :v"), {"v": result.model_version}).one()
    assert (row.method, row.kind, row.checksum) == ("lumos", "lumos", result.sha256)
    assert row.metadata["status"] == "candidate" and row.metadata["object_key"] == result.object_key

    # Promotion: the nightly pipeline runs the candidate from object storage under its version.
    promoted = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), methods=("lumos",),
                           model_key=result.object_key, model_versions={"lumos": result.model_version})
    assert run_night(engine, store, promoted, night=NIGHT, dag_run_id="n2").n_done == 3
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT DISTINCT model_version FROM lumos.measurements WHERE method = 'lumos'")).scalars().all()
    assert versions == [result.model_version]


def test_no_exposures_in_the_window_and_bad_settings(engine, tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    night = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(LumosValueError, match="no exposure measured between 2026-11-01 and 2026-11-30"):
        retrain_candidate(engine, store, night, RetrainConfig(nights=30), until=dt.date(2026, 11, 30), work_dir=tmp_path)
    with pytest.raises(LumosValueError, match="nights must be >= 1"):
        RetrainConfig(nights=0)
    with pytest.raises(LumosValueError, match="runs the checkpoint 'models/x.pt': give its version"):
        NightConfig(store_url="/tmp/s", methods=("lumos",), model_key="models/x.pt")
