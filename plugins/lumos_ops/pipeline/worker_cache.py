"""Per-process cache of what every exposure of a night needs: the LUMOS model and the catalogue.

A worker process measures many exposures in a row (the exposures of a chunk, a whole night
without Airflow, or every task forked from a Celery worker process that warmed the cache). Loading
the LUMOS checkpoint (reading, SHA-256 check, building the network) or parsing the catalogue once
per process instead of once per exposure saves that cost on every exposure after the first.

Entries are keyed by the file's resolved path, modification time (ns) and size, so a file replaced
in place (a new checkpoint under the same name, a catalogue refreshed by the download cache) is
read again. Each cache keeps the few most recent entries (a worker switching models between runs
does not accumulate them).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from lumos_ops.lumos.method import LumosMethod
    from lumos_ops.pipeline.config import NightConfig
    from lumos_ops.pipeline.storage import ObjectStore

__all__ = ["FileKey", "file_key", "lumos_method", "catalog", "clear", "stats", "warm_up", "warm_catalog",
           "warm_production_model", "WARM_MODULES"]

WARM_MODULES: tuple[str, ...] = (
    "numpy", "pandas", "scipy.ndimage", "astropy.io.fits", "astropy.wcs", "torch", "sqlalchemy",
    "lumos_ops.measure", "lumos_ops.render", "lumos_ops.io.exposure", "lumos_ops.io.catalog",
    "lumos_ops.photometry.aperture", "lumos_ops.photometry.modelfit", "lumos_ops.photometry.optimal",
    "lumos_ops.noise_calibration", "lumos_ops.lumos.method", "lumos_ops.pipeline.night",
    "lumos_ops.pipeline.writer",
)
"""What :func:`warm_up` imports: everything a measuring task needs (about 3 CPU s on the
development machine, ``benchmarks/README.md``)."""

_T = TypeVar("_T")
_MAX_ENTRIES = 2
"""Entries kept per cache (least recently used ones go first)."""


@dataclasses.dataclass(frozen=True)
class FileKey:
    """Identity of a file's content as the cache sees it: resolved path, mtime (ns), size (bytes)."""

    path: str
    mtime_ns: int
    size: int


def file_key(path: str | os.PathLike[str]) -> FileKey:
    """The :class:`FileKey` of ``path`` now (raises ``OSError`` when it cannot be read)."""
    resolved = Path(path).resolve()
    info = resolved.stat()
    return FileKey(str(resolved), info.st_mtime_ns, info.st_size)


class _Lru:
    """A small least-recently-used map with hit/miss counters; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[Any, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], _T]) -> _T:
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                self.hits += 1
                return self.entries[key]
        value = load()
        with self.lock:
            self.misses += 1
            self.entries[key] = value
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.hits = self.misses = 0


_MODELS = _Lru(_MAX_ENTRIES)
_CATALOGS = _Lru(_MAX_ENTRIES)


def lumos_method(model: str | os.PathLike[str] | None = None, *, device: str | None = None) -> LumosMethod:
    """A LUMOS method whose checkpoint is loaded once per process (on its first measurement).

    Parameters
    ----------
    model : path-like, shipped-model name or None
        As ``LumosMethod(model=...)``; None is the shipped default model.
    device : str or None, keyword-only
        ``"cuda"`` or ``"cpu"``; None picks CUDA when available (and is cached as that device).

    Raises
    ------
    ModelError
        The checkpoint cannot be found.
    """
    from lumos_ops.lumos.checkpoint import resolve_model_path
    from lumos_ops.lumos.method import LumosMethod

    path = resolve_model_path(model)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _MODELS.get((file_key(path), device), lambda: LumosMethod(model=str(path), device=device))


def catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The validated catalogue of ``path`` (``lumos_ops.io.catalog.read_catalog``), read once per process.

    The frame is shared: callers must not modify it in place.
    """
    from lumos_ops.io.catalog import read_catalog

    return _CATALOGS.get(file_key(path), lambda: read_catalog(path))


def stats() -> dict[str, dict[str, int]]:
    """Hits, misses and entries of each cache (for logs and tests)."""
    return {name: {"hits": c.hits, "misses": c.misses, "entries": len(c.entries)}
            for name, c in (("models", _MODELS), ("catalogs", _CATALOGS))}


def clear() -> None:
    """Forget every cached model and catalogue."""
    _MODELS.clear()
    _CATALOGS.clear()


def warm_up(*, load_model: bool) -> dict[str, float]:
    """Import :data:`WARM_MODULES` and, with ``load_model``, load the shipped default LUMOS model
    on the CPU into this process's cache; returns the seconds of each part.

    Meant for a long-lived process that forks one child per task (a Celery worker process of
    Airflow 3 on Linux): every child inherits the imports and the loaded model instead of paying
    for them. torch runs one intra-op thread while loading (no thread pool exists before the
    fork); never load a model on CUDA before a fork (``load_model=False`` on GPU workers).
    """
    import importlib
    import time

    timings: dict[str, float] = {}
    start = time.perf_counter()
    for name in WARM_MODULES:
        importlib.import_module(name)
    timings["imports_s"] = time.perf_counter() - start
    if load_model:
        import torch

        start = time.perf_counter()
        torch.set_num_threads(1)
        _ = lumos_method(None, device="cpu").loaded
        timings["model_s"] = time.perf_counter() - start
    return timings


def warm_catalog(store: ObjectStore, key: str, cache_dir: str | os.PathLike[str]) -> float:
    """Fetch the catalogue ``key`` of ``store`` through the download cache in ``cache_dir`` and read
    it into this process's cache; returns the seconds it took.

    A task's ``measure_task`` fetches the same key through the same cache: while the object is
    unchanged it gets the same local file (same path, modification time and size), so a task
    forked from a process warmed this way finds the catalogue already read. A changed object is a
    new file (the cache is named by checksum) and is read again.
    """
    import time

    from lumos_ops.pipeline.storage import DownloadCache

    start = time.perf_counter()
    path, _, _ = DownloadCache(cache_dir).fetch(store, key)
    catalog(path)
    return time.perf_counter() - start


def warm_production_model(engine: sa.Engine, store: ObjectStore, config: NightConfig) -> tuple[str | None, float]:
    """Load, on the CPU, the LUMOS checkpoint the nightly run would use now into this process's cache.

    The checkpoint is the one :func:`lumos_ops.pipeline.registry.production_config` resolves (the
    registry's production version, or an operator's ``LUMOS_MODEL_KEY``), fetched through the
    download cache exactly as ``measure_task`` fetches it, so a task forked from this process finds
    it loaded. Returns the checkpoint (local path or shipped name; None for the shipped default,
    which :func:`warm_up` loads) and the seconds it took. Meant for CPU workers only: never load a
    model on CUDA before a fork.
    """
    import time

    from lumos_ops.pipeline.registry import production_config
    from lumos_ops.pipeline.storage import DownloadCache

    start = time.perf_counter()
    resolved = production_config(engine, config)
    model = resolved.measure_options.get("model")
    if resolved.model_key is not None:
        model = str(DownloadCache(resolved.resolved_cache_dir()).fetch(store, resolved.model_key)[0])
    if model is not None:
        _ = lumos_method(model, device="cpu").loaded
    return model, time.perf_counter() - start
