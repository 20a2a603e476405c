"""Validated settings of the nightly pipeline.

:class:`NightConfig` says what to do with a night (where the exposures are, which methods to run);
:class:`DagSettings` is what a DAG file needs when it is parsed (connection ids, schedules, pools,
queues); :class:`PipelineSettings` is both, read when a task runs. Both are plain frozen dataclasses; :meth:`PipelineSettings.from_env` reads ``LUMOS_*``
environment variables, which is how the DAG file and the Docker deployment configure them.
Credentials are never part of these settings: they live in Airflow Connections or boto3's chain.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lumos_ops.exceptions import BadInputError, LumosValueError
from lumos_ops.pipeline.keys import DEFAULT_KEY_TEMPLATE, KeyTemplate, validate_key

if TYPE_CHECKING:
    from lumos_ops.survey import Survey

__all__ = ["NightConfig", "DagSettings", "PipelineSettings", "ENV_VARS", "LUMOS_METHODS", "default_model_version", "parse_model_versions"]

LUMOS_METHODS: frozenset[str] = frozenset({"lumos"})
"""Methods that run the LUMOS network (GPU workers)."""

_METHOD_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def default_model_version(method: str) -> str:
    """Version string of a classical method when none is configured: ``"<method>-1"``."""
    return f"{method}-1"


def parse_model_versions(text: str, *, name: str) -> dict[str, str]:
    """``{method: version}`` from ``"method=version,method=version"``; ``name`` is quoted in errors."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise LumosValueError(f"{name}={text!r}: use method=version pairs separated by commas")
        out[key.strip()] = value.strip()
    return out


@dataclasses.dataclass(frozen=True)
class NightConfig:
    """What the pipeline does with one night.

    Parameters
    ----------
    store_url : str
        Object store: a directory, ``file:///dir`` or ``s3://bucket[/prefix]``.
    key_template : str
        Key of one CCD image, with ``{night}``, ``{expnum}`` and ``{ccd}``.
    catalog_key : str
        Key of the external catalogue (CSV or Parquet) in the store.
    report_prefix : str
        Night reports go to ``<report_prefix>/<night>/``.
    methods : tuple of str
        Photometry methods passed to ``lumos_ops.measure.measure_exposure``.
    model_versions : mapping of str to str
        Version recorded for each method; classical methods default to ``"<method>-1"``, LUMOS to
        the shipped default checkpoint's name; a LUMOS checkpoint given in ``measure_options``
        needs its version here.
    max_nan_fraction : float
        An exposure with a larger fraction of NaN pixels fails validation (0-1).
    cache_dir : str or None
        Download cache; None uses ``$LUMOS_CACHE_DIR`` or ``~/.cache/lumos-ops/objects``.
    endpoint_url, region : str or None
        S3-compatible endpoint and region (ignored for local stores).
    measure_options : mapping
        Extra keyword arguments for ``measure_exposure`` (JSON-serialisable).
    threads : int
        torch CPU threads while measuring one exposure (default 1: workers run several tasks at
        once, and oversubscribed threads made measuring ~10x slower on a loaded 2-core machine).
    model_key : str or None
        Object-store key of the LUMOS checkpoint to run instead of the shipped default (e.g. a
        candidate registered by the ``lumos_retrain`` DAG); fetched through the download cache and
        checked against its SHA-256 on load. Needs the matching version in ``model_versions``.
    model_sha256 : str or None
        The registered checksum of the weights ``model_key`` holds (set from the registry by
        :func:`lumos_ops.pipeline.registry.production_config`): a fetched checkpoint whose weights
        differ fails its exposures, so that one version name never measures with two sets of weights.
    survey_file : str or None
        Survey description file the exposures are read with (``LUMOS_SURVEY``; docs/surveys.md);
        None: the built-in PAUS. Read and validated when the settings are built (task time).
    error_floors : mapping of str to float, or None
        ``flux_error_floor`` / ``neighbour_error_floor`` (fractions of the flux and of the fitted
        neighbours' light, docs/likelihood.md §11) that replace the survey file's for every method,
        and ``method_error_floors`` / ``method_neighbour_error_floors`` (method name -> fraction)
        that replace its per-method ones.
        :func:`lumos_ops.pipeline.registry.production_config` sets them to the floors the
        registry's production LUMOS version measured on this survey (``lumos adapt`` stage 5),
        so a promotion brings its floors with it; None: the survey file's.
    """

    store_url: str
    key_template: str = DEFAULT_KEY_TEMPLATE
    catalog_key: str = "catalog.parquet"
    report_prefix: str = "reports"
    methods: tuple[str, ...] = ("aperture",)
    model_versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_nan_fraction: float = 0.5
    cache_dir: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    measure_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    threads: int = 1
    model_key: str | None = None
    model_sha256: str | None = None
    survey_file: str | None = None
    error_floors: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.error_floors is not None:
            object.__setattr__(self, "error_floors", _floors(self.error_floors))
        if self.survey_file:
            from lumos_ops.survey import load_survey

            load_survey(self.survey_file)  # validated now: a bad file fails here, naming itself
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise LumosValueError(f"threads={self.threads!r} must be an integer >= 1")
        if not self.store_url:
            raise LumosValueError("store_url is empty: give a directory, file:///dir or s3://bucket/prefix")
        KeyTemplate(self.key_template)
        validate_key(self.catalog_key, what="catalog_key")
        validate_key(self.report_prefix, what="report_prefix")
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods:
            raise LumosValueError("methods is empty: name at least one photometry method, e.g. ('aperture',)")
        for method in self.methods:
            if not method or not set(method) <= _METHOD_CHARS:
                raise LumosValueError(f"methods: {method!r} is not a method name (lower-case letters, digits, _)")
        if len(set(self.methods)) != len(self.methods):
            raise LumosValueError(f"methods={self.methods}: a method is listed twice")
        if self.model_key is not None:
            validate_key(self.model_key, what="model_key")
            if "model" in self.measure_options:
                raise LumosValueError("give the LUMOS checkpoint either as model_key or as measure_options['model'], not both")
        for method in self.methods:
            checkpoint = self.model_key or self.measure_options.get("model")
            if method in LUMOS_METHODS and method not in self.model_versions and checkpoint is not None:
                raise LumosValueError(
                    f"model_versions: method {method!r} runs the checkpoint {checkpoint!r}: "
                    f"give its version, e.g. model_versions={{'{method}': 'lumos-2026.11'}}"
                )
        object.__setattr__(self, "model_versions", dict(self.model_versions))
        if not 0.0 <= self.max_nan_fraction <= 1.0:
            raise LumosValueError(f"max_nan_fraction={self.max_nan_fraction} must be within [0, 1]")

    def model_version(self, method: str) -> str:
        """Version recorded with the measurements of ``method``.

        LUMOS without a configured version runs the shipped default checkpoint and records its
        name (e.g. ``"lumos-fast-mf-v12-nobg-ft"``); that module is imported only here, when a task runs.
        """
        if method in self.model_versions:
            return self.model_versions[method]
        if method in LUMOS_METHODS:
            from lumos_ops.lumos.checkpoint import SHIPPED_MODELS

            return os.path.splitext(SHIPPED_MODELS["default"])[0]
        return default_model_version(method)

    def check_methods(self) -> None:
        """Refuse a method name no photometry method has (one error naming it and the methods there
        are), before a night registers a version for it or touches an exposure."""
        from lumos_ops.measure import available_methods

        unknown = [m for m in self.methods if m not in available_methods()]
        if unknown:
            raise LumosValueError(f"methods: unknown photometry method(s) {', '.join(map(repr, unknown))}; "
                                  f"choose from {', '.join(available_methods())}")

    @property
    def needs_gpu(self) -> bool:
        """Whether any configured method runs the LUMOS network."""
        return any(m in LUMOS_METHODS for m in self.methods)

    def step_methods(self, step: str | None) -> tuple[str, ...]:
        """The methods one step of a night measures, in configured order.

        ``None``: every method (one step per exposure); ``"classical"``: all but LUMOS;
        ``"lumos"``: the LUMOS methods.
        """
        if step is None:
            return self.methods
        if step not in ("classical", "lumos"):
            raise LumosValueError(f"step={step!r}: use 'classical', 'lumos' or None")
        return tuple(m for m in self.methods if (m in LUMOS_METHODS) == (step == "lumos"))

    @property
    def survey(self) -> Survey:
        """The :class:`~lumos_ops.survey.Survey` of ``survey_file`` (PAUS when None), read from the
        file, with ``error_floors`` in place of its own."""
        from lumos_ops.survey import load_survey, paus_survey

        survey = load_survey(self.survey_file) if self.survey_file else paus_survey()
        return dataclasses.replace(survey, **self.error_floors) if self.error_floors else survey

    def resolved_cache_dir(self) -> str:
        """The download cache directory."""
        return self.cache_dir or os.environ.get("LUMOS_CACHE_DIR") or os.path.expanduser("~/.cache/lumos-ops/objects")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (recorded in ``pipeline_runs.settings``)."""
        out = dataclasses.asdict(self)
        out["methods"] = list(self.methods)
        out["model_versions"] = dict(self.model_versions)
        out["measure_options"] = dict(self.measure_options)
        out["error_floors"] = dict(self.error_floors) if self.error_floors is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NightConfig:
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LumosValueError(f"unknown night settings {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "methods" in values:
            values["methods"] = tuple(values["methods"])
        return cls(**values)


ENV_VARS: dict[str, str] = {
    "store_url": "LUMOS_STORE_URL",
    "key_template": "LUMOS_KEY_TEMPLATE",
    "catalog_key": "LUMOS_CATALOG_KEY",
    "report_prefix": "LUMOS_REPORT_PREFIX",
    "methods": "LUMOS_METHODS",
    "model_versions": "LUMOS_MODEL_VERSIONS",
    "max_nan_fraction": "LUMOS_MAX_NAN_FRACTION",
    "cache_dir": "LUMOS_CACHE_DIR",
    "model_key": "LUMOS_MODEL_KEY",
    "survey_file": "LUMOS_SURVEY",
    "threads": "LUMOS_THREADS",
    "endpoint_url": "LUMOS_S3_ENDPOINT_URL",
    "region": "LUMOS_S3_REGION",
    "schedule": "LUMOS_SCHEDULE",
    "photoz_schedule": "LUMOS_PHOTOZ_SCHEDULE",
    "retrain_schedule": "LUMOS_RETRAIN_SCHEDULE",
    "s3_conn_id": "LUMOS_S3_CONN_ID",
    "db_conn_id": "LUMOS_DB_CONN_ID",
    "cpu_queue": "LUMOS_CPU_QUEUE",
    "gpu_queue": "LUMOS_GPU_QUEUE",
    "gpu_pool": "LUMOS_GPU_POOL",
    "task_retries": "LUMOS_TASK_RETRIES",
    "max_mapped_tasks": "LUMOS_MAX_MAPPED_TASKS",
    "images_per_task": "LUMOS_IMAGES_PER_TASK",
    "gpu_inference": "LUMOS_GPU_INFERENCE",
}
"""Environment variable read for each setting by :meth:`PipelineSettings.from_env` (the DAG files
read only those of :class:`DagSettings`)."""


@dataclasses.dataclass(frozen=True)
class DagSettings:
    """What the DAG files read when Airflow parses them: schedules, connections, queues, pool,
    retries and the size of mapped work.

    :meth:`from_env` reads only these variables, so a bad task-time setting (say
    ``LUMOS_MAX_NAN_FRACTION=abc``) fails the tasks that use it, with its name, instead of
    breaking the parsing of every DAG.

    Parameters
    ----------
    schedule : str or None
        Cron expression or preset of the daily run (None: manual runs only).
    photoz_schedule : str or None
        Schedule of the ``lumos_photoz_validation`` DAG (default weekly; None: manual runs only).
    retrain_schedule : str or None
        Schedule of the ``lumos_retrain`` DAG (default monthly; None: manual runs only).
    s3_conn_id : str
        Airflow Connection of the S3 endpoint (type ``aws``; extra ``endpoint_url`` for MinIO).
    db_conn_id : str
        Airflow Connection of the photometry database (type ``postgres``).
    cpu_queue, gpu_queue : str
        Celery queues of CPU workers and of GPU workers (LUMOS inference).
    gpu_pool : str
        Airflow pool limiting concurrent GPU tasks.
    task_retries : int
        Retries of the I/O tasks (bad input files fail at once, without retries).
    needs_gpu : bool
        Whether ``LUMOS_METHODS`` names a LUMOS method.
    classical : bool
        Whether ``LUMOS_METHODS`` names a method other than LUMOS.
    gpu_inference : bool
        Whether LUMOS inference runs on GPU workers (``LUMOS_GPU_INFERENCE``): its tasks go to the GPU
        queue and are limited by the GPU pool. False (the default): LUMOS runs on the CPU queue in
        Airflow's ``default_pool``, never behind the GPU pool.
    max_mapped_tasks : int
        Most mapped ``process`` tasks of one run; a larger night is cut into chunks of consecutive
        exposures (Airflow's ``[core] max_map_length`` is 1024 by default).
    images_per_task : int
        Fewest CCD images per mapped ``process`` task (``LUMOS_IMAGES_PER_TASK``, default 1: one
        image per task while the run has at most ``max_mapped_tasks``). A larger value pays each
        task's scheduling and start-up once per chunk (about 1 s per image on the development
        machine, ``benchmarks/README.md``), at the price of coarser reruns from the UI (a cleared
        chunk still measures only what it left). ``lumos_reprocess``'s ``exposures_per_task``
        param overrides it for one run.
    """

    schedule: str | None = "0 10 * * *"
    photoz_schedule: str | None = "0 14 * * 0"
    retrain_schedule: str | None = "0 6 1 * *"
    s3_conn_id: str = "lumos_s3"
    db_conn_id: str = "lumos_db"
    cpu_queue: str = "default"
    gpu_queue: str = "gpu"
    gpu_pool: str = "lumos_gpu"
    task_retries: int = 2
    needs_gpu: bool = False
    classical: bool = True
    gpu_inference: bool = False
    max_mapped_tasks: int = 512
    images_per_task: int = 1

    def __post_init__(self) -> None:
        for name in ("s3_conn_id", "db_conn_id", "cpu_queue", "gpu_queue", "gpu_pool"):
            value = getattr(self, name)
            if not value or not all(c.isalnum() or c in "_-." for c in value):
                raise LumosValueError(f"{name}={value!r}: use letters, digits, '_', '-' or '.'")
        if self.task_retries < 0:
            raise LumosValueError(f"task_retries={self.task_retries} must be >= 0")
        if self.max_mapped_tasks < 1:
            raise LumosValueError(f"max_mapped_tasks={self.max_mapped_tasks} must be >= 1")
        if self.images_per_task < 1:
            raise LumosValueError(f"images_per_task={self.images_per_task} must be >= 1")

    @property
    def lumos_step(self) -> bool:
        """Whether LUMOS runs as its own step (``lumos_nightly``'s ``lumos``) after the classical
        methods (``process``, CPU queue): only with GPU inference and classical methods too. On
        the CPU one step measures every method (no second read, render and Airflow task per image)."""
        return self.needs_gpu and self.classical and self.gpu_inference

    def placement(self, *, runs_lumos: bool) -> tuple[str, str]:
        """``(queue, pool)`` of a task that runs the LUMOS network or not: the GPU queue and pool only
        for LUMOS with ``gpu_inference``, else the CPU queue and Airflow's ``default_pool``."""
        if runs_lumos and self.gpu_inference:
            return self.gpu_queue, self.gpu_pool
        return self.cpu_queue, "default_pool"

    @property
    def process_queue(self) -> str:
        """Queue of ``lumos_nightly``'s ``process`` tasks (the classical methods when LUMOS is its own step)."""
        return self.placement(runs_lumos=self.needs_gpu and not self.lumos_step)[0]

    @property
    def process_pool(self) -> str:
        """Pool of ``lumos_nightly``'s ``process`` tasks."""
        return self.placement(runs_lumos=self.needs_gpu and not self.lumos_step)[1]

    @classmethod
    def dag_kwargs(cls, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The parse-time fields from ``LUMOS_*`` variables (see :data:`ENV_VARS`); unset ones are left out."""
        env = os.environ if environ is None else environ
        get = lambda field: env.get(ENV_VARS[field]) or None  # noqa: E731
        kwargs: dict[str, Any] = {}
        for field in ("s3_conn_id", "db_conn_id", "cpu_queue", "gpu_queue", "gpu_pool"):
            if get(field):
                kwargs[field] = get(field)
        for field in ("schedule", "photoz_schedule", "retrain_schedule"):
            if get(field):
                kwargs[field] = None if get(field).lower() == "none" else get(field)
        for field in ("task_retries", "max_mapped_tasks", "images_per_task"):
            if get(field):
                kwargs[field] = int(_number(get(field), ENV_VARS[field]))
        if get("methods"):
            methods = {m.strip() for m in get("methods").split(",") if m.strip()}
            kwargs["needs_gpu"] = bool(methods & LUMOS_METHODS)
            kwargs["classical"] = bool(methods - LUMOS_METHODS)
        if get("gpu_inference"):
            kwargs["gpu_inference"] = _flag(get("gpu_inference"), ENV_VARS["gpu_inference"])
        return kwargs

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DagSettings:
        """Parse-time settings from ``LUMOS_*`` variables; unset ones keep their defaults."""
        return cls(**cls.dag_kwargs(environ))


@dataclasses.dataclass(frozen=True)
class PipelineSettings(DagSettings):
    """How the nightly pipeline runs: :class:`DagSettings` plus what to do with a night.

    Parameters
    ----------
    night : NightConfig, keyword-only
        What to do with a night; ``needs_gpu`` follows its methods.
    """

    night: NightConfig = dataclasses.field(kw_only=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        """Settings from ``LUMOS_*`` variables (see :data:`ENV_VARS`); unset ones keep their defaults.

        ``LUMOS_STORE_URL`` defaults to ``$AIRFLOW_HOME/lumos-store``; ``LUMOS_SCHEDULE=none``
        (``LUMOS_PHOTOZ_SCHEDULE``, ``LUMOS_RETRAIN_SCHEDULE``) disables that DAG's schedule.
        """
        env = os.environ if environ is None else environ
        get = lambda field: env.get(ENV_VARS[field]) or None  # noqa: E731
        night_kwargs: dict[str, Any] = {
            "store_url": get("store_url")
            or os.path.join(env.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "lumos-store"),
        }
        for field in ("key_template", "catalog_key", "report_prefix", "cache_dir", "endpoint_url", "region", "model_key",
                      "survey_file"):
            if get(field):
                night_kwargs[field] = get(field)
        if get("methods"):
            night_kwargs["methods"] = tuple(m.strip() for m in get("methods").split(",") if m.strip())
        if get("model_versions"):
            night_kwargs["model_versions"] = parse_model_versions(get("model_versions"), name=ENV_VARS["model_versions"])
        if get("threads"):
            night_kwargs["threads"] = int(_number(get("threads"), ENV_VARS["threads"]))
        if get("max_nan_fraction"):
            night_kwargs["max_nan_fraction"] = _number(get("max_nan_fraction"), ENV_VARS["max_nan_fraction"])
        try:
            night = NightConfig(**night_kwargs)
        except BadInputError as exc:
            if not get("survey_file") or get("survey_file") not in str(exc):
                raise
            raise type(exc)(f"{ENV_VARS['survey_file']}: {exc}") from None
        return cls(**{**cls.dag_kwargs(env), "needs_gpu": night.needs_gpu,
                      "classical": any(m not in LUMOS_METHODS for m in night.methods)}, night=night)


FLOOR_NAMES: tuple[str, ...] = ("flux_error_floor", "neighbour_error_floor", "method_error_floors",
                                "method_neighbour_error_floors")
METHOD_FLOOR_NAMES: tuple[str, ...] = ("method_error_floors", "method_neighbour_error_floors")
"""The floors of :data:`FLOOR_NAMES` that map method names to fractions."""


def _floors(floors: Mapping[str, Any]) -> dict[str, float]:
    """``floors`` checked: known names, finite fractions in [0, 1)."""
    unknown = sorted(set(floors) - set(FLOOR_NAMES))
    if unknown:
        raise LumosValueError(f"error_floors: unknown {unknown}; known: {list(FLOOR_NAMES)}")
    out: dict[str, Any] = {}
    for name, value in floors.items():
        if name in METHOD_FLOOR_NAMES:
            if not isinstance(value, Mapping):
                raise LumosValueError(f"error_floors: {name}={value!r} must map method names to fractions")
            out[name] = {str(m): _fraction(f"{name}[{m!r}]", v) for m, v in value.items()}
        else:
            out[name] = _fraction(name, value)
    return out


def _fraction(name: str, value: Any) -> float:
    """``value`` as a floor: a finite fraction in [0, 1)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0.0 <= number < 1.0):
        raise LumosValueError(f"error_floors: {name}={value!r} must be a fraction in [0, 1)")
    return number


def _flag(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise LumosValueError(f"{name}={text!r}: use true or false")


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LumosValueError(f"{name}={text!r} is not a number") from None
