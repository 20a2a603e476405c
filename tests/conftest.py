"""Fixtures shared by several test folders (helper modules at this level, such as lumos_helpers, are
importable from every folder: pytest puts tests/ on sys.path when it loads this conftest)."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from lumos_ops.io.exposure import Exposure
    from lumos_ops.sim import SurveyConfig, SurveyManifest


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server (a real HTTP endpoint) on a free loopback port, with dummy AWS
    credentials in the environment; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    from lumos_ops.pipeline.local_postgres import free_port

    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    mp.undo()


@pytest.fixture(scope="session")
def tiny_training_set(tmp_path_factory):
    """A 96-stamp TEAHUPOO-layout set (see ``lumos_helpers.write_training_set``)."""
    from lumos_helpers import write_training_set

    return write_training_set(tmp_path_factory.mktemp("teahupoo"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A randomly initialised "fast" checkpoint with non-trivial BatchNorm statistics."""
    import torch

    from lumos_ops.lumos.checkpoint import save_checkpoint
    from lumos_ops.lumos.model import get_model

    from lumos_helpers import NORM

    torch.manual_seed(0)
    net = get_model("fast")
    with torch.no_grad():
        net.train()
        net(torch.randn(16, 2, 60, 60), torch.randn(16, 4), torch.zeros(16, dtype=torch.long))
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(path, net, arch="fast", normalization=NORM, metadata={"truncation_imag": 20.5})
    return path


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Two flat-sky FITS exposures of one 23-target catalogue (zero points 26.0 and 26.3) for the
    transfer and validation tests: (exposure paths, catalogue, catalogue CSV path)."""
    from lumos_helpers import write_exposure

    root = tmp_path_factory.mktemp("survey")
    p1, catalog = write_exposure(root / "e1.fits", seed=11, zp=26.0)
    p2, _ = write_exposure(root / "e2.fits", seed=12, zp=26.3)
    catalog.to_csv(root / "catalog.csv", index=False)
    return [str(p1), str(p2)], catalog, root / "catalog.csv"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Exposure, pd.DataFrame, np.ndarray]:
    """Isolated galaxies on a grid, one at the CCD edge, one off the image; row order shuffled (the
    measure and target-context tests: a 260 x 300 synthetic exposure, its catalogue, the true fluxes)."""
    import numpy as np

    from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
    from lumos_ops.io.exposure import read_exposure

    shape = (260, 300)
    catalog = random_catalog(9, shape=shape, seed=4)
    gx, gy = np.meshgrid([60.3, 150.0, 239.6], [55.2, 130.0, 204.7])
    catalog["x"], catalog["y"] = gx.ravel(), gy.ravel()
    catalog.loc[2, ["x", "y"]] = [297.6, 130.0]  # 2 px from the right edge
    catalog.loc[5, ["x", "y"]] = [-30.0, 40.0]  # off the image
    catalog = catalog.iloc[[4, 0, 8, 2, 5, 1, 7, 3, 6]].reset_index(drop=True)
    flux = np.linspace(20.0, 300.0, len(catalog))
    path = tmp_path_factory.mktemp("measure") / "exp.fits"
    synthetic_exposure(catalog, flux, shape=shape, extra_header={"SATURATE": 60000.0}, seed=2).write(path)
    return read_exposure(path), catalog, flux


# The throwaway PostgreSQL of the pipeline and CLI tests: one server per session, one fresh database per test.
_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """The throwaway PostgreSQL server (the Airflow tests start their own: tests/dags/conftest.py)."""
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    server = LocalPostgres.start(database="pipeline")
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server) -> str:
    """URL of a new empty database."""
    return pg_server.create_database(f"t{next(_COUNTER)}")


@pytest.fixture
def engine(db_url):
    """Engine on a new database with every migration applied."""
    from lumos_ops.pipeline.database import make_engine, upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def night_store(tmp_path):
    """A local object store holding the nightdata catalogue (8 sources) and one exposure x two CCDs of
    ``nightdata.NIGHT``: (store, exposure keys)."""
    from lumos_ops.pipeline.storage import LocalObjectStore

    from nightdata import NIGHT, make_catalog, write_catalog, write_night

    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(8)
    write_catalog(store.put_bytes, catalog)
    keys = write_night(store.put_bytes, NIGHT, n_exposures=1, n_ccds=2, catalog=catalog)
    return store, keys


# The small simulated survey of the simulation and io tests, and the TEAHUPOO set cut from it.
SMALL = dict(ccd_shape=(160, 192), n_galaxies=25, bands=("NB615", "NB685"), n_exposures=1, n_epochs=2,
             n_ccds=8, stamp_size=48, bright_star_density=0.2)


@pytest.fixture(scope="session")
def small_config() -> SurveyConfig:
    """Two bands x two epochs x one exposure on 160x192 CCDs, every artefact on."""
    from lumos_ops.sim import SurveyConfig

    return SurveyConfig(seed=7, **SMALL)


@pytest.fixture(scope="session")
def small_survey(tmp_path_factory: pytest.TempPathFactory, small_config: SurveyConfig) -> SurveyManifest:
    """The survey of :func:`small_config`, written once per session."""
    from lumos_ops.sim import simulate_survey

    return simulate_survey(small_config, tmp_path_factory.mktemp("survey"))


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory: pytest.TempPathFactory, small_survey: SurveyManifest):
    """A 150-stamp TEAHUPOO set (3 shards of <= 64, 40 px stamps, seed 5) cut from :func:`small_survey`:
    (directory, manifest, config)."""
    import pandas as pd

    from lumos_ops.sim import TeahupooConfig, generate_training_set

    catalog = pd.read_parquet(small_survey.catalog_path)
    out = tmp_path_factory.mktemp("teahupoo")
    config = TeahupooConfig(n_stamps=150, shard_size=64, seed=5, stamp_size=40)
    manifest = generate_training_set(config, small_survey.exposure_paths, catalog, out)
    return out, manifest, config
