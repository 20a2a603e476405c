"""``lumos_nightly`` run through Airflow (``dag.test()``, the REST API's clearTaskInstances) against
the throwaway PostgreSQL and moto's S3 server."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import sqlalchemy as sa
from injection_reports import report

from lumos_ops.pipeline.database import make_engine, upgrade

from harness import (
    clear_failed,
    clear_map_index,
    env,
    load_dag,
    postgres_conn,
    rendered_map_indexes,
    resume_dag_run,
    run_dag,
    s3_conn,
    task_durations,
    task_states,
)
from nightdata import BAD_KINDS, corrupt, make_catalog, make_exposure_bytes, write_catalog, write_night

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:Warning"),
]

N_SOURCES = 10


@pytest.fixture(scope="module")
def stack(airflow_db, postgres, s3_server, tmp_path_factory):
    """Photometry schema, a bucket with a catalogue, and the Airflow connections in the environment."""
    url = postgres.create_database("nightly")
    engine = make_engine(url)
    upgrade(engine)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="survey")
    catalog = make_catalog(N_SOURCES)

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket="survey", Key=f"paus/{key}", Body=data)

    write_catalog(put, catalog)
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(url), AIRFLOW_CONN_LUMOS_S3=s3_conn(s3_server),
             LUMOS_STORE_URL="s3://survey/paus", LUMOS_METHODS="aperture"):
        yield {"engine": engine, "client": client, "put": put, "catalog": catalog}
    engine.dispose()


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def test_dag_parses_with_expected_tasks(airflow_db):
    dag, errors = load_dag()
    assert errors == {}
    assert dag is not None
    assert set(dag.task_dict) == {"check_schema", "plan", "process", "finish", "night_failures"}
    assert dag.params["night"] is None
    assert dag.task_dict["finish"].trigger_rule == "all_done"
    assert dag.task_dict["process"].queue == "default"


@pytest.mark.slow  # 32 s on 2 busy cores (--durations)
def test_happy_path_then_repeated_run_has_no_duplicates(stack):
    engine, night = stack["engine"], "2026-11-20"
    keys = write_night(stack["put"], night, n_exposures=2, n_ccds=2, catalog=stack["catalog"])
    dag, _ = load_dag()
    start = time.perf_counter()
    first = run_dag(dag, night=night)
    first_s = time.perf_counter() - start
    states = task_states(first.run_id)
    assert str(first.state) in ("success", "DagRunState.SUCCESS"), states
    assert sorted(i for (t, i), s in states.items() if t == "process" and s == "success") == [0, 1, 2, 3]
    assert states[("night_failures", -1)] == "skipped"
    assert set(rendered_map_indexes(first.run_id).values()) == {
        "exp0005000/ccd01", "exp0005000/ccd02", "exp0005001/ccd01", "exp0005001/ccd02"}

    n_rows = len(keys) * N_SOURCES
    assert _count(engine, "SELECT count(*) FROM lumos.exposures WHERE night = :n AND status = 'done'", n=night) == 4
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == n_rows
    # every measurement traceable to its exposure, model version and run (with the DAG run id)
    assert _count(engine, "SELECT count(*) FROM lumos.measurements m JOIN lumos.exposures e USING (exposure_id) "
                          "JOIN lumos.model_versions v USING (model_version) JOIN lumos.pipeline_runs r "
                          "ON r.run_id = m.run_id WHERE r.dag_run_id = :d AND v.model_version = 'aperture-1'",
                  d=first.run_id) == n_rows
    # 2 bands (one per CCD) x 10 sources, each co-added over 2 exposures, none partial
    assert _count(engine, "SELECT count(*) FROM lumos.coadds WHERE n_used = 2 AND NOT partial") == 2 * N_SOURCES
    summary = json.loads(stack["client"].get_object(Bucket="survey", Key=f"paus/reports/{night}/summary.json")["Body"].read())
    assert summary["status"] == "success" and summary["n_done"] == 4 and summary["n_measurements"] == n_rows
    png = stack["client"].get_object(Bucket="survey", Key=f"paus/reports/{night}/timings.png")["Body"].read()
    assert png.startswith(b"\x89PNG")

    second = run_dag(dag, night=night)
    assert str(second.state) in ("success", "DagRunState.SUCCESS")
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == n_rows
    assert _count(engine, "SELECT count(*) FROM lumos.coadds") == 2 * N_SOURCES
    assert _count(engine, "SELECT count(DISTINCT m.run_id) FROM lumos.measurements m JOIN lumos.pipeline_runs r "
                          "ON r.run_id = m.run_id WHERE r.dag_run_id = :d", d=second.run_id) == 1
    assert _count(engine, "SELECT count(*) FROM lumos.pipeline_runs WHERE night = :n AND status = 'success'",
                  n=night) == 2
    print(f"first DAG run (4 exposures): {first_s:.1f} s", task_durations(first.run_id))


@pytest.mark.slow  # 29-85 s on 2 busy cores (--durations)
def test_bad_inputs_fail_only_their_task_then_clear_and_rerun(stack):
    engine, night = stack["engine"], "2026-11-21"
    good = write_night(stack["put"], night, n_exposures=1, n_ccds=2, catalog=stack["catalog"], first_expnum=6000)
    bad = {}
    for i, kind in enumerate(BAD_KINDS):
        key = f"exposures/{night}/exp{6100 + i:07d}_ccd01.fits"
        valid = make_exposure_bytes(stack["catalog"], expnum=6100 + i, ccd=1, band="NB455", seed=i)
        stack["put"](key, corrupt(valid, kind))
        bad[kind] = (key, valid)
    dag, _ = load_dag()
    run = run_dag(dag, night=night)
    states = task_states(run.run_id)
    assert str(run.state) in ("failed", "DagRunState.FAILED")
    labels = {v: k for k, v in rendered_map_indexes(run.run_id).items()}
    for key in good:
        label = key.split("/")[-1].removesuffix(".fits").replace("_", "/")
        assert states[("process", labels[label])] == "success"
    assert states[("finish", -1)] == "success"
    assert states[("night_failures", -1)] == "failed"

    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT object_key, error FROM lumos.exposures WHERE night = :n AND "
                                         "status = 'failed'"), {"n": night}).all())
    expected_words = {"truncated": "truncated", "corrupt": "FITS", "missing_header": "PSFFWHM",
                      "unknown_band": "NB999", "nan_region": "NaN", "empty": "empty"}
    for kind, (key, _) in bad.items():
        label = key.split("/")[-1].removesuffix(".fits").replace("_", "/")
        assert states[("process", labels[label])] == "failed", kind
        assert key in rows[key] and expected_words[kind] in rows[key], (kind, rows[key])
    # co-adds exist for what succeeded; partial, since files of unknown band failed
    assert _count(engine, "SELECT count(*) FROM lumos.coadds c WHERE c.last_night = :n AND c.partial",
                  n=night) == 2 * N_SOURCES
    used_nb455 = _count(engine, "SELECT sum(n_used) FROM lumos.coadds WHERE band = 'NB455'")

    # fix the truncated file and clear only its mapped task (and downstream) through the REST API
    key, valid = bad["truncated"]
    stack["put"](key, valid)
    label = key.split("/")[-1].removesuffix(".fits").replace("_", "/")
    cleared = clear_map_index(run.run_id, labels[label])
    assert {(t["task_id"], t["map_index"]) for t in cleared["task_instances"]} >= {("process", labels[label]),
                                                                                     ("finish", -1)}
    before = _count(engine, "SELECT count(*) FROM lumos.measurements")
    states = resume_dag_run(dag, run.run_id)
    assert states[("process", labels[label])] == "success"
    assert states[("finish", -1)] == "success"
    assert states[("night_failures", -1)] == "failed"  # five files are still bad: the run fails
    with engine.connect() as conn:
        status, error, n = conn.execute(sa.text("SELECT status, error, n_measurements FROM lumos.exposures "
                                                "WHERE object_key = :k"), {"k": key}).one()
    assert (status, error, n) == ("done", None, N_SOURCES)
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == before + N_SOURCES
    assert _count(engine, "SELECT count(*) FROM (SELECT exposure_id, ref_id, method FROM lumos.measurements "
                          "GROUP BY 1, 2, 3 HAVING count(*) > 1) d") == 0
    # co-adds recomputed: every NB455 source gained the fixed exposure
    assert _count(engine, "SELECT sum(n_used) FROM lumos.coadds WHERE band = 'NB455'") == used_nb455 + N_SOURCES


def test_clear_only_failed_ends_with_coadds_report_and_run_matching_the_database(stack):
    """The operator fixes a file and clears the failed tasks only: ``finish`` succeeded before and
    is not rerun, yet co-adds, summary.json and the run record follow the database."""
    engine, client, night = stack["engine"], stack["client"], "2026-11-22"
    write_night(stack["put"], night, n_exposures=1, n_ccds=2, catalog=stack["catalog"], first_expnum=7000)
    key = f"exposures/{night}/exp0007001_ccd01.fits"
    valid = make_exposure_bytes(stack["catalog"], expnum=7001, ccd=1, band="NB455", seed=5)
    stack["put"](key, corrupt(valid, "truncated"))
    dag, _ = load_dag()
    run = run_dag(dag, night=night)
    assert str(run.state) in ("failed", "DagRunState.FAILED")
    summary_key = f"paus/reports/{night}/summary.json"
    summary = json.loads(client.get_object(Bucket="survey", Key=summary_key)["Body"].read())
    assert (summary["status"], summary["n_failed"]) == ("partial", 1)
    finished_before = task_durations(run.run_id)[("finish", -1)]

    stack["put"](key, valid)
    cleared = clear_failed(run.run_id, ["process"])
    assert {t["task_id"] for t in cleared["task_instances"]} == {"process", "night_failures"}
    states = resume_dag_run(dag, run.run_id)
    assert set(states.values()) == {"success", "skipped"}  # the run succeeds
    assert states[("finish", -1)] == "success" and states[("night_failures", -1)] == "skipped"
    assert task_durations(run.run_id)[("finish", -1)] == finished_before  # not rerun
    summary = json.loads(client.get_object(Bucket="survey", Key=summary_key)["Body"].read())
    assert (summary["status"], summary["n_done"], summary["n_failed"]) == ("success", 3, 0)
    assert _count(engine, "SELECT count(*) FROM lumos.pipeline_runs WHERE dag_run_id = :d AND status = 'success' "
                          "AND finished_at IS NOT NULL", d=run.run_id) == 1
    # every co-add of the night's sources counts every stored measurement (the fixed one included)
    # and none is partial any more
    touched = ("EXISTS (SELECT 1 FROM lumos.measurements m JOIN lumos.exposures e USING (exposure_id) "
               "WHERE e.night = :n AND m.ref_id = c.ref_id AND m.band = c.band)")
    assert _count(engine, f"SELECT count(*) FROM lumos.coadds c WHERE {touched}", n=night) == 2 * N_SOURCES
    assert _count(engine, f"SELECT count(*) FROM lumos.coadds c WHERE {touched} AND (partial OR n_stale > 0 OR "
                          "n_used <> (SELECT count(*) FROM lumos.measurements m WHERE m.ref_id = c.ref_id "
                          "AND m.band = c.band AND m.method = c.method))", n=night) == 0


def test_a_night_larger_than_max_mapped_tasks_is_mapped_in_chunks(stack):
    engine, night = stack["engine"], "2026-11-23"
    write_night(stack["put"], night, n_exposures=2, n_ccds=2, catalog=stack["catalog"], first_expnum=8000)
    with env(LUMOS_MAX_MAPPED_TASKS="2"):
        dag, errors = load_dag()
    assert errors == {}
    run = run_dag(dag, night=night)
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    assert rendered_map_indexes(run.run_id) == {0: "exp0008000/ccd01 +1", 1: "exp0008001/ccd01 +1"}
    with env(LUMOS_IMAGES_PER_TASK="3"):
        dag, errors = load_dag()
    run = run_dag(dag, night=night)  # the same night again: one chunk of 3 and one of 1, nothing duplicated
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    assert rendered_map_indexes(run.run_id) == {0: "exp0008000/ccd01 +2", 1: "exp0008001/ccd02"}
    assert _count(engine, "SELECT count(*) FROM lumos.measurements m JOIN lumos.exposures e USING (exposure_id) "
                          "WHERE e.night = :n AND e.status = 'done'", n=night) == 4 * N_SOURCES


def test_a_reprocessing_measures_a_new_version_in_bulk_chunks(stack):
    engine, night = stack["engine"], "2026-11-24"
    write_night(stack["put"], night, n_exposures=2, n_ccds=2, catalog=stack["catalog"], first_expnum=8100)
    nightly, _ = load_dag()
    assert str(run_dag(nightly, night=night).state) in ("success", "DagRunState.SUCCESS")
    reprocess, errors = load_dag("lumos_reprocess")
    assert errors == {}
    conf = {"first_night": night, "last_night": night, "methods": "aperture",
            "model_versions": "aperture=aperture-bulk", "exposures_per_task": 3}
    run = run_dag(reprocess, conf=conf)
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    assert rendered_map_indexes(run.run_id, "lumos_reprocess") == {0: "exp0008100/ccd01 +2", 1: "exp0008101/ccd02"}
    with engine.connect() as conn:
        per_version = dict(conn.execute(sa.text(
            "SELECT m.model_version, count(*) FROM lumos.measurements m JOIN lumos.exposures e USING (exposure_id) "
            "WHERE e.night = :n GROUP BY m.model_version"), {"n": night}).all())
    assert per_version.pop("aperture-bulk") == 4 * N_SOURCES  # every CCD image, beside production's rows
    assert list(per_version.values()) == [4 * N_SOURCES]


def test_empty_night_succeeds_with_nothing_to_do(stack):
    dag, _ = load_dag()
    run = run_dag(dag, night="2026-01-01")
    states = task_states(run.run_id)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), states
    assert states[("finish", -1)] == "success"
    summary = json.loads(stack["client"].get_object(Bucket="survey", Key="paus/reports/2026-01-01/summary.json")["Body"].read())
    assert summary["status"] == "empty" and summary["n_exposures"] == 0


def _run_lumos_night(stack, night: str, *, n_exposures: int, first_expnum: int) -> dict:
    """One night of ``n_exposures`` exposures (one CCD) through the DAG with aperture and LUMOS, asserted
    successful: the run's recorded settings."""
    write_night(stack["put"], night, n_exposures=n_exposures, n_ccds=1, catalog=stack["catalog"],
                first_expnum=first_expnum)
    dag, _ = load_dag()
    with env(LUMOS_METHODS="aperture,lumos"):
        run = run_dag(dag, night=night)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), task_states(run.run_id)
    with stack["engine"].connect() as conn:
        settings = conn.execute(sa.text("SELECT settings FROM lumos.pipeline_runs WHERE dag_run_id = :d"),
                                {"d": run.run_id}).scalar_one()
    return settings


@pytest.mark.slow  # LUMOS on the CPU for 20 targets
def test_the_dag_runs_the_promoted_version_with_its_measured_floors(stack):
    """Through Airflow: a promoted candidate's checkpoint (fetched from S3) measures the night, and
    the error floors it measured on the survey apply to every method; nothing is configured."""
    import hashlib

    from lumos_ops.lumos.checkpoint import resolve_model_path
    from lumos_ops.pipeline.registry import promote, register_candidate

    engine, night = stack["engine"], "2026-11-25"
    weights = resolve_model_path(None).read_bytes()  # the shipped default's weights, under a candidate's key
    stack["put"]("models/candidates/lumos-p.pt", weights)
    register_candidate(engine, model_version="lumos-p", method="lumos", checksum=hashlib.sha256(weights).hexdigest(),
                       object_key="models/candidates/lumos-p.pt",
                       metadata={"error_floors": {"flux_error_floor": 0.031, "neighbour_error_floor": 0.017},
                                 "survey": "paus"})
    promote(engine, "lumos-p", force=True, reason="test: the DAG picks it up")
    settings = _run_lumos_night(stack, night, n_exposures=2, first_expnum=8200)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.method, m.model_version, (m.extras->>'error_floor')::float AS floor, "
            "(m.extras->>'neighbour_error_floor')::float AS neighbour FROM lumos.measurements m "
            "JOIN lumos.exposures e USING (exposure_id) WHERE e.night = :n"), {"n": night}).all()
    versions = {(r.method, r.model_version) for r in rows}
    assert versions == {("aperture", "aperture-1"), ("lumos", "lumos-p")}
    assert len(rows) == 2 * 2 * N_SOURCES
    assert {(r.floor, r.neighbour) for r in rows} == {(0.031, 0.017)}
    assert settings["error_floors"] == {"flux_error_floor": 0.031, "neighbour_error_floor": 0.017}
    assert settings["model_key"] == "models/candidates/lumos-p.pt"


@pytest.mark.slow  # 12-33 s on 2 busy cores (--durations): LUMOS on the CPU, two nights of 10 targets
def test_the_dag_follows_gated_promotions_refusals_and_rollbacks(stack):
    """Through Airflow, without ``force``: a candidate whose injection report passes the gates is
    promoted and measures the next night; a failing candidate is refused and changes nothing; a
    rollback makes the following night measure with the previous production version again."""
    import hashlib

    from lumos_ops.lumos.checkpoint import resolve_model_path
    from lumos_ops.pipeline.registry import (
        GatesFailed,
        attach_report,
        get_version,
        list_events,
        production_version,
        promote,
        register_candidate,
        rollback,
    )

    engine = stack["engine"]
    weights = resolve_model_path(None).read_bytes()  # the shipped default's weights, under each candidate's key
    checksum = hashlib.sha256(weights).hexdigest()
    reports = {"lumos-gate-base": report({"bias": 0.010, "sigma68": 0.10, "pull": 1.02}),  # what production measured
               "lumos-gate-a": report({"bias": 0.008, "sigma68": 0.09, "pull": 1.00}),  # no worse, better than classical
               "lumos-gate-b": report({"bias": 0.030, "sigma68": 0.12, "pull": 1.40})}  # worse than both
    for version, injection in reports.items():
        stack["put"](f"models/candidates/{version}.pt", weights)
        register_candidate(engine, model_version=version, method="lumos", checksum=checksum,
                           object_key=f"models/candidates/{version}.pt", metadata={"survey": "paus"})
        attach_report(engine, version, injection, source="test")
    # setup: a known production version with a report (another test may have left one without)
    promote(engine, "lumos-gate-base", force=True, reason="test setup: a production version with a report")
    first_event = max(e.event_id for e in list_events(engine, method="lumos", limit=None))

    promoted = promote(engine, "lumos-gate-a", reason="test: passes the gates")
    assert (promoted.previous, promoted.forced, promoted.gate_result.passed) == ("lumos-gate-base", False, True)
    assert get_version(engine, "lumos-gate-base").status == "retired"
    with pytest.raises(GatesFailed) as refused:
        promote(engine, "lumos-gate-b", reason="test: fails the gates")
    assert any("worse than production lumos-gate-a's" in r for r in refused.value.result.reasons)
    assert any("best classical method's (aperture)" in r for r in refused.value.result.reasons)
    b = get_version(engine, "lumos-gate-b")
    assert (b.status, b.gates_passed) == ("candidate", False) and b.gate_result["reasons"]
    assert production_version(engine, "lumos").model_version == "lumos-gate-a"

    def lumos_night(night: str, first_expnum: int) -> tuple[set, dict]:
        settings = _run_lumos_night(stack, night, n_exposures=1, first_expnum=first_expnum)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT m.method, m.model_version FROM lumos.measurements m JOIN lumos.exposures e "
                "USING (exposure_id) WHERE e.night = :n"), {"n": night}).all()
        assert len(rows) == 2 * N_SOURCES
        return {tuple(r) for r in rows}, settings

    # the nightly runs the gated promotion's version, not the refused candidate
    versions, settings = lumos_night("2026-11-26", 8300)
    assert versions == {("aperture", "aperture-1"), ("lumos", "lumos-gate-a")}
    assert settings["model_key"] == "models/candidates/lumos-gate-a.pt"

    back = rollback(engine, "lumos", reason="test: roll back")
    assert (back.retired, back.restored) == ("lumos-gate-a", "lumos-gate-base")
    versions, settings = lumos_night("2026-11-27", 8310)
    assert versions == {("aperture", "aperture-1"), ("lumos", "lumos-gate-base")}
    assert settings["model_key"] == "models/candidates/lumos-gate-base.pt"

    # the history records the promotion (with its gates), the refusal and the rollback, in order
    events = [e for e in reversed(list_events(engine, method="lumos", limit=None)) if e.event_id > first_event]
    assert [(e.model_version, e.action, e.from_status, e.to_status) for e in events] == [
        ("lumos-gate-base", "retire", "production", "retired"),
        ("lumos-gate-a", "promote", "candidate", "production"),
        ("lumos-gate-b", "reject", "candidate", "candidate"),
        ("lumos-gate-a", "rollback", "production", "retired"),
        ("lumos-gate-base", "rollback", "retired", "production"),
    ]
    assert events[1].details == {"previous": "lumos-gate-base", "forced": False, "gates_passed": True}
    assert events[1].reason == "test: passes the gates"
    assert events[2].details["reasons"] == list(refused.value.result.reasons)
    assert events[3].reason == events[4].reason == "test: roll back"
    assert events[3].details == {"restored": "lumos-gate-base"} and events[4].details == {"rolled_back": "lumos-gate-a"}
    assert {v: get_version(engine, v).status for v in reports} == {
        "lumos-gate-base": "production", "lumos-gate-a": "retired", "lumos-gate-b": "candidate"}
