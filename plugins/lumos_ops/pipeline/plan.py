"""The neutral plan of a night: plain dataclasses passed between the pipeline's steps.

Airflow tasks exchange these through XCom as JSON dicts (``to_dict`` / ``from_dict``): object keys,
row ids and numbers, never arrays. The same objects drive ``lumos night run --no-airflow``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from lumos_ops.exceptions import LumosValueError

__all__ = ["ExposureTask", "NightPlan", "ExposureResult", "CoaddSummary", "NightReport", "chunk_label"]

_T = TypeVar("_T")


def _from_dict(cls: type[_T], data: Mapping[str, Any]) -> _T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class ExposureTask:
    """One CCD image to process.

    Attributes
    ----------
    exposure_id : int
        Row of ``lumos.exposures``.
    key : str
        Object key of the FITS file.
    night : str
        ``YYYY-MM-DD``.
    expnum, ccd : int
        Identifiers parsed from the key.
    size : int
        Bytes at registration.
    checksum : str
        Checksum at registration (the download must match it).
    run_id : int
        Provenance row of the run that planned it.
    catalog_key : str
        Object key of the catalogue, and ``catalog_checksum`` its checksum.
    catalog_checksum : str
    """

    exposure_id: int
    key: str
    night: str
    expnum: int
    ccd: int
    size: int
    checksum: str
    run_id: int
    catalog_key: str
    catalog_checksum: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExposureTask:
        """Inverse of :meth:`to_dict`."""
        return _from_dict(cls, data)

    @property
    def label(self) -> str:
        """Short name for logs and Airflow's map-index template, e.g. ``exp0001234/ccd03``."""
        return f"exp{self.expnum:07d}/ccd{self.ccd:02d}"


@dataclasses.dataclass(frozen=True)
class NightPlan:
    """Everything planned for a night."""

    night: str
    run_id: int
    tasks: tuple[ExposureTask, ...]
    skipped_keys: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether there is nothing to do."""
        return not self.tasks

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"night": self.night, "run_id": self.run_id, "tasks": [t.to_dict() for t in self.tasks],
                "skipped_keys": list(self.skipped_keys)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NightPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(night=data["night"], run_id=int(data["run_id"]),
                   tasks=tuple(ExposureTask.from_dict(t) for t in data["tasks"]),
                   skipped_keys=tuple(data.get("skipped_keys", ())))

    def chunks(self, max_chunks: int, min_size: int = 1) -> list[tuple[ExposureTask, ...]]:
        """The tasks cut into at most ``max_chunks`` runs of ``max(min_size, ceil(n / max_chunks))``
        consecutive exposures (the last may be shorter): one exposure per chunk while the night has
        at most ``max_chunks`` and ``min_size`` is 1. A larger ``min_size`` (bulk reprocessing)
        pays each mapped task's scheduling and start-up once per ``min_size`` exposures."""
        if max_chunks < 1:
            raise LumosValueError(f"max_chunks={max_chunks} must be >= 1")
        if min_size < 1:
            raise LumosValueError(f"min_size={min_size} must be >= 1 (exposures per mapped task)")
        size = max(min_size, -(-len(self.tasks) // max_chunks)) if self.tasks else 0
        return [self.tasks[i:i + size] for i in range(0, len(self.tasks), size)] if size else []


def chunk_label(tasks: Sequence[ExposureTask]) -> str:
    """Airflow map-index label of a chunk: ``exp0001234/ccd03``, or ``exp0001234/ccd03 +2`` for
    three exposures starting there."""
    return tasks[0].label + (f" +{len(tasks) - 1}" if len(tasks) > 1 else "")


@dataclasses.dataclass(frozen=True)
class ExposureResult:
    """Outcome of one exposure."""

    exposure_id: int
    key: str
    status: str
    n_measurements: int = 0
    download_s: float = 0.0
    measure_s: float = 0.0
    write_s: float = 0.0
    downloaded: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExposureResult:
        """Inverse of :meth:`to_dict`."""
        return _from_dict(cls, data)


@dataclasses.dataclass(frozen=True)
class CoaddSummary:
    """Outcome of the night's co-add step: the sources co-added, the co-adds written, those
    ``partial``, those of LUMOS likelihoods (``pdf_coadds``) and those that use stale rows
    (``n_stale``: measurements kept from an earlier write of an exposure whose latest attempt failed)."""

    night: str
    n_sources: int
    n_coadds: int
    n_partial: int
    pdf_coadds: int
    seconds: float
    n_stale: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoaddSummary:
        """Inverse of :meth:`to_dict`."""
        return _from_dict(cls, data)


@dataclasses.dataclass(frozen=True)
class NightReport:
    """The night's report: counts, failures, timings and where the report objects are stored."""

    night: str
    run_id: int
    status: str
    n_exposures: int
    n_done: int
    n_failed: int
    n_measurements: int
    n_coadds: int
    failures: tuple[tuple[str, str], ...]
    timings: Mapping[str, float]
    objects: tuple[str, ...]
    n_pending: int = 0
    n_stale: int = 0
    n_stale_measurements: int = 0
    n_coadds_partial: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        out = dataclasses.asdict(self)
        out["failures"] = [list(f) for f in self.failures]
        out["objects"] = list(self.objects)
        out["timings"] = dict(self.timings)
        return out

    def summary(self) -> str:
        """Human-readable lines for logs and the CLI."""
        lines = [
            f"night {self.night}: {self.status} (run {self.run_id})",
            f"  exposures: {self.n_exposures} ({self.n_done} done, {self.n_failed} failed"
            + (f", {self.n_pending} not finished" if self.n_pending else "") + ")",
            f"  measurements: {self.n_measurements}   co-adds: {self.n_coadds}"
            + (f" ({self.n_coadds_partial} partial)" if self.n_coadds_partial else ""),
        ]
        if self.n_stale:
            lines.append(f"  stale: {self.n_stale} exposures keep {self.n_stale_measurements} measurements of an "
                         "earlier successful write (their latest attempt did not succeed)")
        if self.timings:
            lines.append("  timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in self.timings.items()))
        for key, error in self.failures:
            lines.append(f"  FAILED {error}" if error.startswith(key) else f"  FAILED {key}: {error}")
        if self.objects:
            lines.append("  report objects: " + ", ".join(self.objects))
        return "\n".join(lines)
