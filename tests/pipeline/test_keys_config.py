import pytest

from lumos_ops.exceptions import LumosValueError, StorageError
from lumos_ops.pipeline.config import ENV_VARS, NightConfig, PipelineSettings
from lumos_ops.pipeline.keys import DEFAULT_KEY_TEMPLATE, KeyTemplate, validate_key, validate_night


def test_default_template_formats_parses_and_lists_by_night():
    template = KeyTemplate()
    key = template.format("2026-11-20", 1234, 3)
    assert key == "exposures/2026-11-20/exp0001234_ccd03.fits"
    parsed = template.parse(key)
    assert (parsed.night, parsed.expnum, parsed.ccd) == ("2026-11-20", 1234, 3)
    assert template.prefix("2026-11-20") == "exposures/2026-11-20/exp"
    assert template.parse("exposures/2026-11-20/readme.txt") is None
    assert template.parse("exposures/2026-13-40/exp0001234_ccd03.fits") is None


def test_custom_template_needs_every_field_once():
    KeyTemplate("raw/{night}/{ccd:02d}/{expnum}.fits")
    with pytest.raises(LumosValueError, match="exactly once"):
        KeyTemplate("raw/{night}/{expnum}.fits")


@pytest.mark.parametrize("key", ["", "/abs/key", "a/../b", "a//b", "a/./b", "sp ace", "semi;colon", "x" * 1025])
def test_unsafe_keys_are_rejected(key):
    with pytest.raises(StorageError):
        validate_key(key)


def test_night_is_validated():
    assert validate_night("2026-11-20") == "2026-11-20"
    with pytest.raises(LumosValueError, match="night="):
        validate_night("20261120x")


def test_settings_from_env_and_validation():
    settings = PipelineSettings.from_env({
        ENV_VARS["store_url"]: "s3://survey/paus", ENV_VARS["methods"]: "aperture, lumos",
        ENV_VARS["model_versions"]: "lumos=lumos-2026.11", ENV_VARS["schedule"]: "none",
        ENV_VARS["gpu_queue"]: "cuda",
    })
    assert settings.night.methods == ("aperture", "lumos")
    assert settings.night.model_version("aperture") == "aperture-1"
    assert settings.night.model_version("lumos") == "lumos-2026.11"
    assert settings.night.needs_gpu and settings.schedule is None and settings.gpu_queue == "cuda"
    assert settings.night.key_template == DEFAULT_KEY_TEMPLATE
    assert NightConfig.from_dict(settings.night.to_dict()) == settings.night
    shipped = NightConfig(store_url="/tmp/x", methods=("lumos",))
    assert shipped.model_version("lumos").startswith("lumos-") and shipped.model_version("aperture") == "aperture-1"
    with pytest.raises(LumosValueError, match="checkpoint 'my.pt': give its version"):
        NightConfig(store_url="/tmp/x", methods=("lumos",), measure_options={"model": "my.pt"})
    with pytest.raises(LumosValueError, match="max_nan_fraction"):
        NightConfig(store_url="/tmp/x", max_nan_fraction=2.0)
    with pytest.raises(LumosValueError, match="methods"):
        NightConfig(store_url="/tmp/x", methods=("Bad Name",))


def test_dag_settings_read_only_parse_time_variables():
    from lumos_ops.pipeline.config import DagSettings

    env = {ENV_VARS["max_nan_fraction"]: "abc", ENV_VARS["threads"]: "many", ENV_VARS["methods"]: "aperture,lumos",
           ENV_VARS["max_mapped_tasks"]: "64", ENV_VARS["gpu_pool"]: "gpus"}
    dag = DagSettings.from_env(env)  # bad task-time values do not break parsing ...
    assert dag.needs_gpu and not dag.gpu_inference and not dag.lumos_step and dag.max_mapped_tasks == 64
    assert (dag.process_queue, dag.process_pool) == ("default", "default_pool")  # LUMOS on the CPU: no GPU pool
    on_gpu = DagSettings.from_env({**env, ENV_VARS["gpu_inference"]: "true"})
    assert on_gpu.lumos_step and on_gpu.placement(runs_lumos=True) == ("gpu", "gpus")
    assert (on_gpu.process_queue, on_gpu.process_pool) == ("default", "default_pool")  # the classical step
    lumos_only = DagSettings.from_env({ENV_VARS["methods"]: "lumos", ENV_VARS["gpu_inference"]: "yes"})
    assert not lumos_only.lumos_step and (lumos_only.process_queue, lumos_only.process_pool) == ("gpu", "lumos_gpu")
    with pytest.raises(LumosValueError, match="LUMOS_GPU_INFERENCE='maybe'"):
        DagSettings.from_env({ENV_VARS["gpu_inference"]: "maybe"})
    with pytest.raises(LumosValueError, match="LUMOS_THREADS='many' is not a number"):
        PipelineSettings.from_env(env)  # ... they fail the tasks that read them, naming the variable
    with pytest.raises(LumosValueError, match="LUMOS_MAX_MAPPED_TASKS"):
        DagSettings.from_env({ENV_VARS["max_mapped_tasks"]: "x"})
    assert DagSettings.from_env({}).images_per_task == 1
    assert DagSettings.from_env({ENV_VARS["images_per_task"]: "8"}).images_per_task == 8
    with pytest.raises(LumosValueError, match="images_per_task=0"):
        DagSettings.from_env({ENV_VARS["images_per_task"]: "0"})
    assert not DagSettings.from_env({}).needs_gpu and DagSettings.from_env({}).process_pool == "default_pool"


def test_a_large_night_is_mapped_in_chunks_of_consecutive_exposures():
    from lumos_ops.pipeline.plan import ExposureTask, NightPlan, chunk_label

    tasks = tuple(ExposureTask(exposure_id=i, key=f"k{i}", night="2026-11-20", expnum=1000 + i // 8, ccd=1 + i % 8,
                               size=1, checksum="c", run_id=1, catalog_key="cat", catalog_checksum="c")
                  for i in range(1000))
    plan = NightPlan(night="2026-11-20", run_id=1, tasks=tasks)
    chunks = plan.chunks(512)
    assert len(chunks) == 500 and {len(c) for c in chunks} == {2}
    assert [t for c in chunks for t in c] == list(tasks)  # every exposure once, in order
    assert [len(c) for c in plan.chunks(300)] == [4] * 250
    assert [len(c) for c in plan.chunks(3)] == [334, 334, 332]
    small = NightPlan(night="2026-11-20", run_id=1, tasks=tasks[:5]).chunks(512)
    assert [len(c) for c in small] == [1] * 5 and chunk_label(small[0]) == "exp0001000/ccd01"
    assert chunk_label(chunks[1]) == "exp0001000/ccd03 +1"
    assert NightPlan(night="2026-11-20", run_id=1, tasks=()).chunks(512) == []
    assert NightPlan(night="2026-11-20", run_id=1, tasks=()).chunks(512, min_size=8) == []


def test_bulk_runs_can_ask_for_more_exposures_per_mapped_task():
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.pipeline.plan import ExposureTask, NightPlan

    tasks = tuple(ExposureTask(exposure_id=i, key=f"k{i}", night="2026-11-20", expnum=1000 + i // 8, ccd=1 + i % 8,
                               size=1, checksum="c", run_id=1, catalog_key="cat", catalog_checksum="c")
                  for i in range(20))
    plan = NightPlan(night="2026-11-20", run_id=1, tasks=tasks)
    assert [len(c) for c in plan.chunks(512, min_size=8)] == [8, 8, 4]
    assert [len(c) for c in plan.chunks(2, min_size=3)] == [10, 10]  # max_chunks still bounds the map
    assert [t for c in plan.chunks(512, min_size=7) for t in c] == list(tasks)
    with pytest.raises(LumosValueError, match="min_size=0"):
        plan.chunks(512, min_size=0)
