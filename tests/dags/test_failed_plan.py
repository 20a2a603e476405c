"""A failed ``plan`` (or check) through Airflow: a configuration error fails its task once, without the
retries ``LUMOS_TASK_RETRIES`` gives, with its own message; the ``all_done`` tasks after it end
without ``XComNotFound`` (``finish`` skipped, the last task failed in one line naming ``plan``), and
the DAG run is failed."""

from __future__ import annotations

import pytest

from lumos_ops.pipeline.database import make_engine, upgrade

from harness import env, load_dag, postgres_conn, run_dag

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:Warning"),
]

RETRIES = "2"  # what production has; tests/airflow_env.py sets 0


@pytest.fixture(scope="module")
def database(airflow_db, postgres):
    """A migrated photometry database (check_schema passes; plan is the first task to fail)."""
    url = postgres.create_database("failed_plan")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _task_instances(dag_id: str, run_id: str) -> dict[str, tuple[str, int, int]]:
    """``{task_id: (state, try_number, max_tries)}`` of a DAG run's unmapped task instances (a mapped
    task that never expanded keeps its one instance, map index -1)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                                                  TaskInstance.map_index == -1).all()
        return {ti.task_id: (str(getattr(ti.state, "value", ti.state)), ti.try_number, ti.max_tries) for ti in rows}


def _failed(run) -> bool:
    return str(run.state) in ("failed", "DagRunState.FAILED")


@pytest.mark.parametrize("two_steps", [False, True], ids=["one-step", "lumos-step"])
def test_a_misconfigured_store_fails_the_nightly_plan_once_and_the_run_with_it(database, capfd, two_steps):
    """With ``LUMOS_GPU_INFERENCE``, the ``lumos`` step (``all_done``, mapped over plan's chunks) is
    upstream-failed too: there is nothing to expand it over."""
    steps = {"LUMOS_METHODS": "aperture,lumos", "LUMOS_MODEL_VERSIONS": "lumos=lumos-test",
             "LUMOS_GPU_INFERENCE": "true"} if two_steps else {"LUMOS_METHODS": "aperture"}
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(database), LUMOS_TASK_RETRIES=RETRIES,
             LUMOS_STORE_URL="ftp://archive.example.org/paus", **steps):
        dag, errors = load_dag()
        assert errors == {}
        assert ("lumos" in dag.task_dict) is two_steps
        capfd.readouterr()
        run = run_dag(dag, night="2026-11-20")
    log = "".join(capfd.readouterr())
    tis = _task_instances("lumos_nightly", run.run_id)
    assert _failed(run), tis
    assert tis["check_schema"][0] == "success"
    assert tis["plan"] == ("failed", 1, 2)  # two retries allowed, none taken
    assert tis["process"][0] == "upstream_failed"
    if two_steps:
        assert tis["lumos"][0] == "upstream_failed"
    assert tis["finish"][0] == "skipped"
    assert tis["night_failures"][:2] == ("failed", 1)
    assert "XComNotFound" not in log and "not found" not in log
    assert "LumosValueError: store URL 'ftp://archive.example.org/paus'" in log  # plan's own error
    assert "plan failed, so no night was planned or measured" in log


def test_reprocess_needs_its_model_versions_param(airflow_db):
    """The trigger form (and any trigger) demands the versions the rows are written under."""
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag, errors = load_dag("lumos_reprocess")
    assert errors == {}
    assert dag.params.get_param("model_versions").has_value is False

    def validate(**conf):
        params = copy.deepcopy(dag.params)
        params.update({"first_night": "2026-11-20", "last_night": "2026-11-21", **conf})
        return params.validate()

    with pytest.raises(ParamValidationError, match="model_versions: No value passed"):
        validate()
    with pytest.raises(ParamValidationError, match="model_versions"):
        validate(model_versions="lumos")
    assert validate(model_versions="lumos=lumos-2026.12")["methods"] == "lumos"
    validate(model_versions=" lumos = lumos-2026.12 , aperture=ap-2 ", methods="lumos,aperture")


def test_a_reprocess_without_a_lumos_version_fails_plan_once_and_the_run_with_it(database, tmp_path, capfd):
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(database), LUMOS_TASK_RETRIES=RETRIES,
             LUMOS_STORE_URL=str(tmp_path), LUMOS_METHODS="aperture"):
        dag, errors = load_dag("lumos_reprocess")
        assert errors == {}
        capfd.readouterr()
        run = run_dag(dag, conf={"first_night": "2026-11-20", "last_night": "2026-11-20", "methods": "lumos",
                                 "model_versions": "aperture=aperture-2"})
    log = "".join(capfd.readouterr())
    tis = _task_instances("lumos_reprocess", run.run_id)
    assert _failed(run), tis
    assert tis["plan"] == ("failed", 1, 2)
    assert tis["process"][0] == "upstream_failed"
    assert tis["finish"][0] == "skipped"
    assert tis["incomplete"][:2] == ("failed", 1)
    assert "XComNotFound" not in log and "not found" not in log
    assert "LumosValueError: reprocessing ['lumos'] needs their model version" in log
    assert "plan failed, so nothing was planned or measured" in log


def test_a_misconfigured_photoz_check_fails_once(database, capfd):
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(database), LUMOS_TASK_RETRIES=RETRIES,
             LUMOS_STORE_URL="ftp://archive.example.org/paus"):
        dag, errors = load_dag("lumos_photoz_validation")
        assert errors == {}
        capfd.readouterr()
        run = run_dag(dag)
    log = "".join(capfd.readouterr())
    tis = _task_instances("lumos_photoz_validation", run.run_id)
    assert _failed(run), tis
    assert tis["photoz"] == ("failed", 1, 2)
    assert "LumosValueError: store URL 'ftp://archive.example.org/paus'" in log
