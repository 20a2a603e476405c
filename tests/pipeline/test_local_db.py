"""``lumos db start`` / ``stop`` / ``status``: the persistent local PostgreSQL and the embedded
default database of the ``lumos`` commands (``LocalCluster``, ``database_url_from_env``)."""

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from lumos_ops.cli import main
from lumos_ops.exceptions import DatabaseError
from lumos_ops.pipeline.database import database_url_from_env, make_engine
from lumos_ops.pipeline.local_postgres import LocalCluster, local_cluster_dir
from lumos_ops.pipeline.storage import LocalObjectStore

from nightdata import make_catalog, write_catalog, write_night

NIGHT = "2026-11-20"
NO_DB = "set LUMOS_DATABASE_URL or run `lumos db start`"


@pytest.fixture(scope="module")
def lumos_home():
    """A LUMOS_HOME the server's OS user can reach (pytest's tmp_path is private to root); the
    cluster started in it is stopped and deleted at the end, however the tests end."""
    home = Path(tempfile.mkdtemp(prefix="lumos-home-"))
    os.chmod(home, 0o755)
    yield home
    try:
        LocalCluster(home / "postgres").stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def local_env(lumos_home, monkeypatch):
    """Environment of a user with no database configured, whose data directory is ``lumos_home``."""
    monkeypatch.setenv("LUMOS_HOME", str(lumos_home))
    monkeypatch.delenv("LUMOS_DATABASE_URL", raising=False)
    return lumos_home


def test_cluster_dir_is_lumos_home_then_xdg_data_home_then_local_share(monkeypatch):
    assert local_cluster_dir({"LUMOS_HOME": "/srv/lumos", "XDG_DATA_HOME": "/x"}) == Path("/srv/lumos/postgres")
    assert local_cluster_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/lumos/postgres")
    monkeypatch.setenv("HOME", "/home/alice")
    assert local_cluster_dir({}) == Path("/home/alice/.local/share/lumos/postgres")


def test_without_any_database_the_error_names_both_fixes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUMOS_HOME", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("LUMOS_DATABASE_URL", raising=False)
    with pytest.raises(DatabaseError, match=r"set LUMOS_DATABASE_URL or run `lumos db start`"):
        database_url_from_env()
    assert main(["night", "run", "--night", NIGHT, "--no-airflow", "--store", str(tmp_path)]) == 2
    assert NO_DB in capsys.readouterr().err
    assert main(["db", "status"]) == 3
    assert "not created yet" in capsys.readouterr().out
    assert not (tmp_path / "nothing-here").exists()  # looking for the database creates nothing


@pytest.mark.postgres
def test_start_status_stop_and_the_data_survives(local_env, capsys):
    cluster = LocalCluster(local_env / "postgres")
    assert main(["db", "start"]) == 0
    out = capsys.readouterr().out
    assert "started" in out and "applied V001" in out
    url = cluster.running_url()
    assert url and f"export LUMOS_DATABASE_URL='{url}'" in out
    assert main(["db", "start"]) == 0  # idempotent
    out = capsys.readouterr().out
    assert "already running" in out and "already current" in out and url in out
    assert main(["db", "status"]) == 0
    assert "running" in capsys.readouterr().out
    state = json.loads(cluster.state_file.read_text())
    assert state["url"] == url and isinstance(state["port"], int)
    for private in (cluster.state_file, cluster.passfile):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private

    engine = make_engine(database_url_from_env())  # the embedded default: no URL given anywhere
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
            assert conn.execute(sa.text("SHOW unix_socket_directories")).scalar() == ""
            conn.execute(sa.text("INSERT INTO lumos.model_versions (model_version, method, kind) "
                                 "VALUES ('kept-1', 'aperture', 'classical')"))
    finally:
        engine.dispose()
    no_password = make_engine(sa.make_url(url).difference_update_query(["passfile"]))
    try:
        with pytest.raises(sa.exc.OperationalError, match="password"):
            no_password.connect().close()
    finally:
        no_password.dispose()

    assert main(["db", "stop"]) == 0
    assert "stopped (data kept)" in capsys.readouterr().out
    assert main(["db", "status"]) == 3
    assert "stopped" in capsys.readouterr().out
    assert main(["db", "check"]) == 2
    assert NO_DB in capsys.readouterr().err and not cluster.is_running()

    assert main(["db", "start"]) == 0
    assert cluster.running_url() == url  # same port, same URL: an exported LUMOS_DATABASE_URL stays valid
    capsys.readouterr()
    assert main(["db", "query", "night_summary", "-p", "limit=1"]) == 0
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT method FROM lumos.model_versions "
                                        "WHERE model_version = 'kept-1'")).scalar() == "aperture"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_night_run_uses_the_local_cluster_by_default(local_env, tmp_path, monkeypatch, capsys):
    assert main(["db", "start"]) == 0
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(6)
    write_catalog(store.put_bytes, catalog)
    write_night(store.put_bytes, NIGHT, n_exposures=1, n_ccds=1, catalog=catalog)
    monkeypatch.setenv("LUMOS_CACHE_DIR", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["night", "run", "--night", NIGHT, "--no-airflow", "--store", str(store.root)]) == 0
    assert "1 done, 0 failed" in capsys.readouterr().out
    engine = make_engine(LocalCluster(local_env / "postgres").running_url())
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar() >= 6
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_airflow_connection_defaults_to_the_local_cluster_unless_defined(local_env, monkeypatch):
    from lumos_ops.airflow.hooks import LumosPostgresHook
    from lumos_ops.cli import night

    assert main(["db", "start"]) == 0
    url = LocalCluster(local_env / "postgres").running_url()
    monkeypatch.setattr(night, "_airflow_connection_defined", lambda conn_id: False)
    monkeypatch.delenv("AIRFLOW_CONN_LUMOS_DB", raising=False)
    night._default_airflow_db_connection("lumos_db", None)
    engine = LumosPostgresHook(postgres_conn_id="lumos_db").get_lumos_engine()  # what the DAG's tasks use
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM lumos.schema_migrations")).scalar() > 0
    finally:
        engine.dispose()
    assert json.loads(os.environ["AIRFLOW_CONN_LUMOS_DB"])["extra"]["sqlalchemy_query"]["passfile"].endswith("pgpass")

    monkeypatch.setenv("AIRFLOW_CONN_LUMOS_DB", "postgresql://pipeline@db.example.org/lumos")
    night._default_airflow_db_connection("lumos_db", None)  # a defined Connection is kept
    assert os.environ["AIRFLOW_CONN_LUMOS_DB"] == "postgresql://pipeline@db.example.org/lumos"
    night._default_airflow_db_connection("lumos_db", url)  # --db-url wins
    assert json.loads(os.environ["AIRFLOW_CONN_LUMOS_DB"])["port"] == sa.make_url(url).port
