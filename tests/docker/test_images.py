"""Docker cannot run here: check what can be checked about docker/ against the code's settings."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from lumos_ops.pipeline.config import ENV_VARS, PipelineSettings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
SERVICES = {"postgres", "minio", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-worker-gpu"}


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _queues(command: str) -> str:
    return re.search(r"--queues\s+(\S+)", command).group(1)


def test_compose_services_executor_and_queues_agree_with_settings():
    compose = _compose()
    services = compose["services"]
    assert SERVICES <= set(services)
    env = services["airflow-scheduler"]["environment"]
    settings = PipelineSettings.from_env({k: str(v) for k, v in env.items()})
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
    assert _queues(services["airflow-worker"]["command"]) == settings.cpu_queue == PipelineSettings.__dataclass_fields__["cpu_queue"].default
    assert _queues(services["airflow-worker-gpu"]["command"]) == settings.gpu_queue == "gpu"
    assert "nvidia" in json.dumps(services["airflow-worker-gpu"]["deploy"])
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == settings.cpu_queue
    assert f"airflow pools set {settings.gpu_pool} " in services["airflow-init"]["command"][0]
    for service in SERVICES - {"postgres", "minio", "redis"}:
        assert services[service]["environment"]["LUMOS_GPU_QUEUE"] == settings.gpu_queue
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    assert "9000:9000" in services["minio"]["ports"] and "5432:5432" in services["postgres"]["ports"]


def test_compose_environment_names_the_code_reads():
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    lumos_vars = {k for k in env if k.startswith("LUMOS_")}
    assert lumos_vars <= set(ENV_VARS.values()), lumos_vars - set(ENV_VARS.values())
    settings = PipelineSettings.from_env({k: str(v) for k, v in env.items()})
    assert env[f"AIRFLOW_CONN_{settings.db_conn_id.upper()}"].startswith("postgresql://lumos_pipeline:")
    s3 = json.loads(env[f"AIRFLOW_CONN_{settings.s3_conn_id.upper()}"])
    assert s3["conn_type"] == "aws" and s3["extra"]["endpoint_url"] == "http://minio:9000"
    bucket = settings.night.store_url.removeprefix("s3://").split("/")[0]
    assert f"local/{bucket}" in _compose()["services"]["minio-init"]["command"][0]


def test_compose_celery_deployment_is_the_one_the_executor_test_runs():
    """tests/dags/test_celery_executor.py runs these settings and worker commands end to end; what it
    replaces (container hostnames) must be what this file says."""
    services = _compose()["services"]
    env = services["airflow-scheduler"]["environment"]
    settings = PipelineSettings.from_env({k: str(v) for k, v in env.items()})
    # tasks without a queue of their own go to the CPU workers, not to a queue nobody serves
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == settings.cpu_queue
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # Celery's result backend is the metadata database (CeleryExecutor cannot use SQLite)
    metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert metadata.startswith("postgresql+psycopg2://") and metadata.endswith("@postgres:5432/airflow")
    plain = lambda url: re.sub(r"\$\{(\w+):\?[^}]*\}", r"${\1}", url)  # noqa: E731 - ${X:?msg} -> ${X}
    assert plain(env["AIRFLOW__CELERY__RESULT_BACKEND"]) == "db+" + plain(metadata).replace("+psycopg2", "")
    workers = {name: shlex.split(service["command"]) for name, service in services.items()
               if isinstance(service.get("command"), str) and service["command"].startswith("celery worker")}
    assert {name: _queues(" ".join(argv)) for name, argv in workers.items()} == {
        "airflow-worker": settings.cpu_queue, "airflow-worker-gpu": settings.gpu_queue}
    for name, argv in workers.items():
        assert int(argv[argv.index("--concurrency") + 1]) >= 1, name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["airflow-worker-gpu"]["environment"] == services["airflow-worker"]["environment"]


def test_compose_airflow_settings_exist_in_airflow(tmp_path):
    """Every ``AIRFLOW__SECTION__KEY`` of the compose file is an option of the pinned Airflow and its
    providers (a misspelt one is silently ignored: ``[celery] default_queue`` does not exist, the
    default queue is ``[operators] default_queue``)."""
    names = {key for service in _compose()["services"].values() for key in (service.get("environment") or {})
             if key.startswith("AIRFLOW__")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    script = ("import json; from airflow.configuration import conf; conf.load_providers_configuration(); "
              "print(json.dumps({s: sorted(v['options']) for s, v in conf.configuration_description.items()}))")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    options = json.loads(result.stdout.strip().splitlines()[-1])
    unknown = sorted(name for name in names
                     if name.split("__")[2].lower() not in options.get(name.split("__")[1].lower(), []))
    assert names and not unknown, unknown


def test_no_credentials_in_deployment_files():
    reference = re.compile(r"^\$\{[A-Z_]+(:\?[^}]*)?\}$")
    for name, service in _compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if re.search(r"PASSWORD|SECRET|FERNET", key):
                assert reference.match(value), (name, key)
            for password in re.findall(r"://[^:/@\s]+:([^@]+)@", value):
                assert password.startswith("${"), (name, key)
            if key.startswith("AIRFLOW_CONN_") and value.startswith("{"):
                conn = json.loads(value)
                assert reference.match(conn["login"]) and reference.match(conn["password"]), (name, key)
    init = (DOCKER / "init" / "postgres-init.sh").read_text()
    assert re.findall(r"PASSWORD\s+(\S+)", init) and all(p.startswith(":'") for p in re.findall(r"PASSWORD\s+(\S+)", init))
    assert all(line.endswith("=") for line in (DOCKER / ".env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    assert (DOCKER / ".gitignore").read_text().split() == [".env"]


def test_images_pin_the_versions_of_the_lock():
    lock = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines() if "==" in line and not line.startswith("#"))
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert f"ARG AIRFLOW_VERSION={lock['apache-airflow']}" in text
        assert f"torch=={lock['torch']}" in text
        assert "LUMOS_SQL_DIR=/opt/lumos/sql" in text and "COPY --chown=airflow:root sql/" in text
    assert "cu1" in (DOCKER / "Dockerfile.gpu").read_text()
    assert '"--queues", "gpu"' in (DOCKER / "Dockerfile.gpu").read_text()


def test_compose_volumes_are_folders_the_images_make_for_their_user():
    """A named volume mounted where the image has no folder comes up owned by root: the airflow user
    could not write the download cache. Each image makes the folders the compose file mounts."""
    services = _compose()["services"]
    mounts = {volume.split(":")[1] for name in ("airflow-worker", "airflow-worker-gpu")
              for volume in services[name].get("volumes", []) if not volume.startswith((".", "/"))}
    assert mounts, "the workers mount a named volume (the download cache)"
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / dockerfile).read_text()
        made = set(re.findall(r"mkdir -p (\S+)", text))
        assert mounts <= made, (dockerfile, mounts - made)
        assert text.rindex("USER airflow") < text.index("mkdir -p"), dockerfile


def test_compose_gpu_worker_has_nightly_work():
    """With a GPU worker (LUMOS_GPU_INFERENCE true) the nightly methods name LUMOS, or the GPU idles."""
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    settings = PipelineSettings.from_env({k: str(v) for k, v in env.items()})
    assert settings.gpu_inference and settings.night.needs_gpu and settings.lumos_step
