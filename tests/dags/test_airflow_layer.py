"""DAG wiring by settings: queues, pools, trigger rules and priorities of the parsed DAGs (the Airflow
layer itself: tests/airflow)."""

from __future__ import annotations

import pytest

from harness import env, load_dag

pytestmark = pytest.mark.airflow


def test_only_lumos_inference_goes_to_the_gpu_queue_and_pool(airflow_db):
    """Classical methods stay on the CPU queue in the default pool; the ``lumos`` step (after every
    ``process`` task, whatever their outcome) is the only task behind the GPU pool."""
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_MODEL_VERSIONS="lumos=lumos-test", LUMOS_GPU_QUEUE="cuda",
             LUMOS_GPU_POOL="gpus", LUMOS_GPU_INFERENCE="true", LUMOS_SCHEDULE="none"):
        dag, errors = load_dag()
    assert errors == {}
    process, lumos = dag.task_dict["process"], dag.task_dict["lumos"]
    assert (process.queue, process.pool) == ("default", "default_pool")
    assert (lumos.queue, lumos.pool, lumos.trigger_rule) == ("cuda", "gpus", "all_done")
    assert lumos.upstream_task_ids == {"plan", "process"}
    assert dag.task_dict["finish"].upstream_task_ids == {"plan", "process", "lumos"}
    assert dag.task_dict["plan"].queue == "default"
    assert type(dag.timetable).__name__ == "NullTimetable"


def test_lumos_on_the_cpu_is_never_behind_the_gpu_pool(airflow_db):
    """Without ``LUMOS_GPU_INFERENCE`` (the default) LUMOS runs on CPU workers in the default pool."""
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_MODEL_VERSIONS="lumos=lumos-test", LUMOS_SCHEDULE="none"):
        dag, errors = load_dag()
    with env(LUMOS_METHODS="lumos", LUMOS_SCHEDULE="none"):
        lumos_only, _ = load_dag()
    assert errors == {}
    assert {(t.queue, t.pool) for t in dag.tasks} == {("default", "default_pool")}
    for parsed in (dag, lumos_only):  # one step measures every method: no second read and render per image
        assert set(parsed.task_dict) == {"check_schema", "plan", "process", "finish", "night_failures"}
    assert (lumos_only.task_dict["process"].queue, lumos_only.task_dict["process"].pool) == ("default", "default_pool")


def test_reprocess_dag_parses_below_the_nightly_priority(airflow_db):
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_MAX_MAPPED_TASKS="64"):
        reprocess, errors = load_dag("lumos_reprocess")
        nightly, _ = load_dag("lumos_nightly")
    assert errors == {}
    assert set(reprocess.task_dict) == {"check_schema", "plan", "process", "finish", "incomplete"}
    assert set(reprocess.params) == {"first_night", "last_night", "methods", "model_versions", "model_key",
                                     "exposures_per_task"}
    assert type(reprocess.timetable).__name__ == "NullTimetable"  # manual runs only
    weights = {d.dag_id: (d.task_dict["process"].priority_weight, d.task_dict["process"].weight_rule)
               for d in (reprocess, nightly)}
    assert weights == {"lumos_reprocess": (1, "absolute"), "lumos_nightly": (10, "absolute")}
    assert reprocess.task_dict["process"].queue == "default" and reprocess.task_dict["finish"].trigger_rule == "all_done"
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_GPU_INFERENCE="true"):
        on_gpu, _ = load_dag("lumos_reprocess")
    assert (on_gpu.task_dict["process"].queue, on_gpu.task_dict["process"].pool) == ("gpu", "lumos_gpu")
