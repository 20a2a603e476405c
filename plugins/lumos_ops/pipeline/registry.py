"""The model registry that decides: status life cycle, promotion gates, rollback (``docs/registry.md``).

Every version in ``lumos.model_versions`` is a *candidate*, the *production* version of its method
(at most one) or *retired* (was production). :func:`promote` makes a candidate production only when
its injection report (:func:`attach_report`, the ``injection_report.json`` of ``lumos inject``)
passes :class:`Gates` against the production version's report and the classical methods of the
same report; otherwise it stays a candidate with the reasons (``gate_result``) and a ``reject``
event. :func:`rollback` restores the previous production version. Everything is recorded in the
append-only ``lumos.model_events``.

The nightly pipeline asks :func:`production_config` which versions to run: an explicitly
configured ``LUMOS_MODEL_VERSIONS`` / ``LUMOS_MODEL_KEY`` wins (operator override, logged),
otherwise each LUMOS method runs its production version from the registry, otherwise the shipped
default. :func:`pinned_config` gives the later tasks of a run the versions its plan resolved.

Changing a status needs UPDATE on ``lumos.model_versions`` and INSERT on ``lumos.model_events``:
the schema owner (or a login the owner granted both); the pipeline's ``lumos_writer`` may only
register new versions (:func:`register_candidate`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lumos_ops.exceptions import LumosError, LumosValueError
from lumos_ops.pipeline.config import FLOOR_NAMES, LUMOS_METHODS, METHOD_FLOOR_NAMES, NightConfig

__all__ = [
    "STATUSES",
    "RegistryError",
    "RegistryPermissionError",
    "shipped_name",
    "GatesFailed",
    "Gates",
    "GateResult",
    "RegistryEntry",
    "RegistryEvent",
    "PromotionResult",
    "RollbackResult",
    "evaluate_gates",
    "production_version",
    "get_version",
    "list_versions",
    "list_events",
    "register_candidate",
    "attach_report",
    "promote",
    "rollback",
    "resolve_production",
    "production_config",
    "pinned_config",
    "measured_floors",
]

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("candidate", "production", "retired")
"""Life cycle of a model version: candidate -> production -> retired (-> production by rollback)."""

_LOCK_NAMESPACE = "lumos.model_registry"
"""First key of the advisory lock (with the method's hash) serialising registrations, promotions and
rollbacks of a method."""


class RegistryError(LumosError, RuntimeError):
    """A registry operation cannot be done (unknown version, nothing to roll back to...)."""


class RegistryPermissionError(RegistryError, PermissionError):
    """The connected user may not change the registry (the pipeline's writer role, a reader)."""


class GatesFailed(RegistryError):
    """A candidate's injection report fails the promotion gates; it stays a candidate.

    Attributes
    ----------
    model_version : str
    result : GateResult
        Every check, and the reasons of the failures.
    """

    def __init__(self, model_version: str, result: GateResult) -> None:
        self.model_version = model_version
        self.result = result
        super().__init__(f"{model_version} stays a candidate: the promotion gates failed: " + "; ".join(result.reasons))


# --------------------------------------------------------------------------------------- gates


@dataclasses.dataclass(frozen=True)
class Gates:
    """Thresholds a candidate's injection report must meet to be promoted.

    Metrics are the fixed-truth ones of ``lumos inject`` (per population, the method's
    ``by_true_snr`` bins of the per-exposure fractional error): only bins with
    ``lo >= snr_min`` and at least ``min_n`` injections count, and each metric is the worst bin,
    as in the report's own targets. ``bias``: worst ``|bias|``; ``sigma68``: compared bin by bin
    (same true-SNR edges), worst ratio; ``pull``: worst ``|pull_sigma68 - 1|``.

    Attributes
    ----------
    snr_min : float
        Lowest true SNR of the bins that count (the report's targets use 5).
    min_n : int
        Bins with fewer injections are ignored.
    bias_tolerance : float
        Against production: worst |bias| may exceed production's by at most this (absolute,
        fraction of the flux).
    sigma68_tolerance : float
        Against production: sigma68 may exceed production's by at most this fraction in any bin.
    pull_range : (float, float)
        Pull sigma68 counted as calibrated: a candidate whose every bin lies inside passes the pull
        checks whatever production's or the classical methods' pulls.
    pull_tolerance : float
        Against production (outside ``pull_range``): worst |pull sigma68 - 1| may exceed
        production's by at most this.
    vs_classical : bool
        Also require the candidate to be at least as good as the best classical method of the same
        report (LUMOS versions only).
    classical_methods : tuple of str or None
        Classical methods to compare with (None: every non-LUMOS method in the report).
    classical_bias_margin : float
        Worst |bias| may exceed the best classical method's by at most this (0: no worse).
    classical_sigma68_ratio : float
        sigma68 may be at most this times the best classical method's in every bin (1: no worse).
    classical_pull_margin : float
        Worst |pull sigma68 - 1| may exceed the best classical method's by at most this (outside
        ``pull_range``).
    require_production_report : bool
        A production version without an injection report fails the gates (attach one with
        ``lumos model attach-report``) instead of skipping the comparison with production.
    required_populations : tuple of str
        Populations the candidate's report must contain (besides every population of production's).
    require_targets : bool
        Every row of the report's ``targets`` (the likelihood issue's absolute acceptance numbers)
        must be met.
    targets_within_errors : float
        With ``require_targets``: a missed target whose value lies at most this many of its own
        bootstrap errors outside its range (the row's ``outside_in_errors``) passes, with a note;
        0 (default): the value itself must lie in the range. A row without an error must be met.
    """

    snr_min: float = 5.0
    min_n: int = 10
    bias_tolerance: float = 0.005
    sigma68_tolerance: float = 0.05
    pull_range: tuple[float, float] = (0.9, 1.1)
    pull_tolerance: float = 0.05
    vs_classical: bool = True
    classical_methods: tuple[str, ...] | None = None
    classical_bias_margin: float = 0.0
    classical_sigma68_ratio: float = 1.0
    classical_pull_margin: float = 0.0
    require_production_report: bool = True
    required_populations: tuple[str, ...] = ()
    require_targets: bool = False
    targets_within_errors: float = 0.0

    def __post_init__(self) -> None:
        for name in ("snr_min", "bias_tolerance", "sigma68_tolerance", "pull_tolerance", "classical_bias_margin",
                     "classical_pull_margin", "targets_within_errors"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise LumosValueError(f"gates: {name}={value!r} must be a number >= 0")
        if not isinstance(self.min_n, int) or isinstance(self.min_n, bool) or self.min_n < 1:
            raise LumosValueError(f"gates: min_n={self.min_n!r} must be an integer >= 1")
        ratio = self.classical_sigma68_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not ratio > 0:
            raise LumosValueError(f"gates: classical_sigma68_ratio={ratio!r} must be a number > 0")
        pull = tuple(self.pull_range)
        if len(pull) != 2 or not all(isinstance(v, (int, float)) for v in pull) or not 0 < pull[0] <= 1 <= pull[1]:
            raise LumosValueError(f"gates: pull_range={self.pull_range!r} must be [low, high] with 0 < low <= 1 <= high")
        object.__setattr__(self, "pull_range", (float(pull[0]), float(pull[1])))
        for name in ("classical_methods", "required_populations"):
            value = getattr(self, name)
            if value is None and name == "classical_methods":
                continue
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise LumosValueError(f"gates: {name}={value!r} must be a list of names")
            object.__setattr__(self, name, tuple(value))
        for name in ("vs_classical", "require_production_report", "require_targets"):
            if not isinstance(getattr(self, name), bool):
                raise LumosValueError(f"gates: {name}={getattr(self, name)!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (recorded with every gate result)."""
        out = dataclasses.asdict(self)
        out["pull_range"] = list(self.pull_range)
        out["required_populations"] = list(self.required_populations)
        if self.classical_methods is not None:
            out["classical_methods"] = list(self.classical_methods)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gates:
        """Gates from a mapping of field names (missing ones keep their defaults).

        Raises
        ------
        LumosValueError
            An unknown name or an invalid value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LumosValueError(f"gates: unknown setting(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        for name in ("pull_range", "classical_methods", "required_populations"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Gates:
        """Gates from a JSON (``.json``) or TOML (any other suffix) file of field names.

        A TOML file may put them under a ``[gates]`` table. Example::

            sigma68_tolerance = 0.03
            classical_sigma68_ratio = 1.05
            pull_range = [0.85, 1.15]
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise LumosValueError(f"{path}: cannot read the gates file ({exc.strerror})") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import tomllib

                data = tomllib.loads(text)
        except ValueError as exc:
            raise LumosValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
        if isinstance(data, dict) and set(data) == {"gates"} and isinstance(data["gates"], dict):
            data = data["gates"]
        if not isinstance(data, dict):
            raise LumosValueError(f"{path}: the gates file must hold a table/object of settings")
        try:
            return cls.from_dict(data)
        except LumosValueError as exc:
            raise LumosValueError(f"{path}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class GateResult:
    """Outcome of :func:`evaluate_gates`.

    Attributes
    ----------
    passed : bool
    reasons : tuple of str
        One sentence per failed check (empty when ``passed``).
    checks : tuple of dict
        Every check made: ``population``, ``check``, ``value``, ``limit``, ``passed``.
    notes : tuple of str
        Checks that could not be made and were skipped (e.g. no production version yet).
    """

    passed: bool
    reasons: tuple[str, ...] = ()
    checks: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in ``gate_result``)."""
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": [dict(c) for c in self.checks],
                "notes": list(self.notes)}


def _num(value: Any) -> float:
    """A report number as float (None, strings and NaN -> NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _bins(entry: Mapping[str, Any], gates: Gates) -> dict[tuple[float, float], dict[str, float]]:
    """The method entry's true-SNR bins that count, keyed by their edges."""
    out = {}
    for row in entry.get("by_true_snr") or ():
        lo, hi = _num(row.get("lo")), _num(row.get("hi"))
        if not (math.isfinite(lo) and lo >= gates.snr_min and _num(row.get("n")) >= gates.min_n):
            continue
        out[(lo, hi)] = {k: _num(row.get(k)) for k in ("bias", "sigma68", "pull_sigma68")}
    return out


def _worst(bins: Mapping[Any, Mapping[str, float]], key: str, ideal: float) -> float:
    """Largest ``|value - ideal|`` over the bins (NaN when none is finite)."""
    values = [abs(b[key] - ideal) for b in bins.values() if math.isfinite(b[key])]
    return max(values) if values else float("nan")


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4g}"


def _bin_label(edges: tuple[float, float]) -> str:
    lo, hi = edges
    return f"[{lo:g}, {hi:g})" if hi < 1e5 else f">= {lo:g}"


class _Checks:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.reasons: list[str] = []
        self.notes: list[str] = []

    def add(self, population: str | None, check: str, value: float, limit: float, ok: bool, reason: str) -> None:
        ok = bool(ok) and math.isfinite(value)
        self.checks.append({"population": population, "check": check,
                            "value": value if math.isfinite(value) else None,
                            "limit": limit if math.isfinite(limit) else None, "passed": ok})
        if not ok:
            self.reasons.append(reason)

    def fail(self, population: str | None, check: str, reason: str) -> None:
        self.checks.append({"population": population, "check": check, "value": None, "limit": None, "passed": False})
        self.reasons.append(reason)


def _populations(report: Mapping[str, Any] | None) -> dict[str, Any]:
    pops = (report or {}).get("populations")
    return pops if isinstance(pops, dict) else {}


def evaluate_gates(
    candidate_report: Mapping[str, Any] | None,
    production_report: Mapping[str, Any] | None,
    gates: Gates | None = None,
    *,
    method: str = "lumos",
    production_version: str | None = None,
) -> GateResult:
    """Check a candidate's injection report against production's and the classical methods'.

    A pure function (no database). For every population of the candidate's report, with the
    metrics of :class:`Gates` (worst bin of true SNR >= ``snr_min``):

    * against production (when a production version exists): worst |bias| <= production's +
      ``bias_tolerance``; sigma68 <= production's x (1 + ``sigma68_tolerance``) in every common bin;
      pull sigma68 inside ``pull_range`` in every bin, or worst |pull - 1| <= production's +
      ``pull_tolerance``;
    * against the best classical method of the same report (LUMOS methods, ``vs_classical``): worst
      |bias| <= the smallest classical one + ``classical_bias_margin``; sigma68 <=
      ``classical_sigma68_ratio`` x the smallest classical sigma68 in every bin; pull inside
      ``pull_range`` or worst |pull - 1| <= the best classical one + ``classical_pull_margin``.

    The candidate's report must contain every population of production's and of
    ``gates.required_populations``, and ``method`` in each population.

    Parameters
    ----------
    candidate_report, production_report : mapping or None
        ``injection_report.json`` dicts; ``production_report`` None with ``production_version``
        None means the method has no production version (those checks are skipped, noted).
    gates : Gates, optional
        Default :class:`Gates()`.
    method : str, keyword-only
        Method of the versions (the report's ``populations.<p>.methods`` key).
    production_version : str, keyword-only
        Name of the production version (for the messages; see ``production_report``).

    Returns
    -------
    GateResult
    """
    gates = gates or Gates()
    out = _Checks()
    prod_name = f"production {production_version}" if production_version else "production"
    if not candidate_report:
        out.fail(None, "report", "no injection report attached (lumos model attach-report VERSION REPORT.json)")
        return GateResult(False, tuple(out.reasons), tuple(out.checks))
    cand_pops = _populations(candidate_report)
    if not cand_pops:
        out.fail(None, "report", "the injection report has no populations")
        return GateResult(False, tuple(out.reasons), tuple(out.checks))
    compare_production = production_report is not None
    if production_report is None:
        if production_version is None:
            out.notes.append(f"no production version of {method}: checks against production skipped")
        elif gates.require_production_report:
            out.fail(None, "production report",
                     f"{prod_name} has no injection report to compare with: attach one "
                     f"(lumos model attach-report {production_version} REPORT.json) or promote with --force --reason")
        else:
            out.notes.append(f"{prod_name} has no injection report: checks against production skipped")
    prod_pops = _populations(production_report)
    for pop in sorted((set(prod_pops) | set(gates.required_populations)) - set(cand_pops)):
        origin = "required by the gates" if pop in gates.required_populations else f"in {prod_name}'s report"
        out.fail(pop, "population", f"{pop}: population {origin} is missing from the candidate's report")
    low, high = gates.pull_range
    for pop in sorted(cand_pops):
        methods = cand_pops[pop].get("methods") or {}
        if method not in methods:
            out.fail(pop, "method", f"{pop}: the candidate's report has no {method!r} results")
            continue
        cand = _bins(methods[method], gates)
        if not cand:
            out.fail(pop, "bins", f"{pop}: no true-SNR bin >= {gates.snr_min:g} with >= {gates.min_n} injections "
                                  f"for {method}")
            continue
        bias = _worst(cand, "bias", 0.0)
        pull = _worst(cand, "pull_sigma68", 1.0)
        pull_ok = all(low <= b["pull_sigma68"] <= high for b in cand.values())
        scope = f"true SNR >= {gates.snr_min:g}"

        prod_entry = (prod_pops.get(pop, {}).get("methods") or {}).get(method) if compare_production else None
        if compare_production and prod_entry is None:
            out.notes.append(f"{pop}: {prod_name}'s report has no {method!r} results: not compared")
        elif compare_production and not _bins(prod_entry, gates):
            out.notes.append(f"{pop}: {prod_name}'s report has no true-SNR bin >= {gates.snr_min:g} with >= "
                             f"{gates.min_n} injections: not compared")
        elif compare_production:
            prod = _bins(prod_entry, gates)
            p_bias = _worst(prod, "bias", 0.0)
            limit = p_bias + gates.bias_tolerance
            out.add(pop, "bias vs production", bias, limit, bias <= limit,
                    f"{pop}: worst |bias| ({scope}) {_fmt(bias)} is worse than {prod_name}'s {_fmt(p_bias)} "
                    f"+ {gates.bias_tolerance:g}")
            common = sorted(set(cand) & set(prod))
            if not common:
                out.fail(pop, "sigma68 vs production", f"{pop}: no true-SNR bin in common with {prod_name}'s report")
            for edges in common:
                c, p = cand[edges]["sigma68"], prod[edges]["sigma68"]
                lim = p * (1 + gates.sigma68_tolerance)
                out.add(pop, f"sigma68 vs production, true SNR {_bin_label(edges)}", c, lim, c <= lim,
                        f"{pop}: sigma68 in true-SNR bin {_bin_label(edges)} {_fmt(c)} is worse than "
                        f"{prod_name}'s {_fmt(p)} x {1 + gates.sigma68_tolerance:g}")
            p_pull = _worst(prod, "pull_sigma68", 1.0)
            limit = p_pull + gates.pull_tolerance
            out.add(pop, f"pull vs production (or inside [{low:g}, {high:g}])", pull, limit, pull_ok or pull <= limit,
                    f"{pop}: worst |pull sigma68 - 1| ({scope}) {_fmt(pull)} is outside [{low:g}, {high:g}] and worse "
                    f"than {prod_name}'s {_fmt(p_pull)} + {gates.pull_tolerance:g}")

        if gates.vs_classical and method in LUMOS_METHODS:
            names = [m for m in methods if m not in LUMOS_METHODS
                     and (gates.classical_methods is None or m in gates.classical_methods)]
            classical = {m: _bins(methods[m], gates) for m in names}
            classical = {m: b for m, b in classical.items() if b}
            if not classical:
                out.notes.append(f"{pop}: no classical method in the report: comparison with classical skipped")
                continue
            best_bias_method = min(classical, key=lambda m: _worst(classical[m], "bias", 0.0))
            c_bias = _worst(classical[best_bias_method], "bias", 0.0)
            limit = c_bias + gates.classical_bias_margin
            out.add(pop, f"bias vs best classical ({best_bias_method})", bias, limit, bias <= limit,
                    f"{pop}: worst |bias| ({scope}) {_fmt(bias)} is worse than the best classical method's "
                    f"({best_bias_method}) {_fmt(c_bias)}" + (f" + {gates.classical_bias_margin:g}"
                                                              if gates.classical_bias_margin else ""))
            for edges in sorted(cand):
                values = {m: b[edges]["sigma68"] for m, b in classical.items()
                          if edges in b and math.isfinite(b[edges]["sigma68"])}
                if not values:
                    continue
                best = min(values, key=values.get)
                c = cand[edges]["sigma68"]
                lim = values[best] * gates.classical_sigma68_ratio
                out.add(pop, f"sigma68 vs best classical, true SNR {_bin_label(edges)} ({best})", c, lim, c <= lim,
                        f"{pop}: sigma68 in true-SNR bin {_bin_label(edges)} {_fmt(c)} is worse than the best "
                        f"classical method's ({best}) {_fmt(values[best])}"
                        + (f" x {gates.classical_sigma68_ratio:g}" if gates.classical_sigma68_ratio != 1 else ""))
            best_pull_method = min(classical, key=lambda m: _worst(classical[m], "pull_sigma68", 1.0))
            c_pull = _worst(classical[best_pull_method], "pull_sigma68", 1.0)
            limit = c_pull + gates.classical_pull_margin
            out.add(pop, f"pull vs best classical ({best_pull_method}; or inside [{low:g}, {high:g}])", pull, limit, pull_ok or pull <= limit,
                    f"{pop}: worst |pull sigma68 - 1| ({scope}) {_fmt(pull)} is outside [{low:g}, {high:g}] and worse "
                    f"than the best classical method's ({best_pull_method}) {_fmt(c_pull)}")

    if gates.require_targets:
        rows = [t for t in candidate_report.get("targets") or () if isinstance(t, Mapping)]
        if not rows:
            out.fail(None, "targets", "require_targets: the report has no targets")
        for row in rows:
            if row.get("met"):
                continue
            outside = _num(row.get("outside_in_errors"))
            if gates.targets_within_errors > 0 and outside <= gates.targets_within_errors:
                out.notes.append(f"{row.get('population')}: target {row.get('target')} missed by {outside:.2f} of its "
                                 f"errors (value {_fmt(_num(row.get('value')))}), within targets_within_errors "
                                 f"{gates.targets_within_errors:g}: passed")
                continue
            out.fail(row.get("population"), f"target: {row.get('target')}",
                     f"{row.get('population')}: target not met: {row.get('target')} (value {_fmt(_num(row.get('value')))})")
    return GateResult(not out.reasons, tuple(out.reasons), tuple(out.checks), tuple(out.notes))


# ------------------------------------------------------------------------------------ registry


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
    """A row of ``lumos.model_versions``.

    Attributes
    ----------
    model_version, method, kind, status : str
    checksum : str or None
        SHA-256 of the weights (LUMOS).
    object_key : str or None
        Where the checkpoint lives in the object store (None: classical or shipped).
    metadata : dict
    registered_at : datetime
    status_since : datetime or None
        When the version got its current status (its latest event).
    injection_report : dict or None
    gate_result : dict or None
        Outcome of the last promotion attempt.
    """

    model_version: str
    method: str
    kind: str
    status: str
    checksum: str | None
    object_key: str | None
    metadata: dict[str, Any]
    registered_at: dt.datetime
    status_since: dt.datetime | None
    injection_report: dict[str, Any] | None = dataclasses.field(default=None, repr=False)
    gate_result: dict[str, Any] | None = None

    @property
    def has_report(self) -> bool:
        return self.injection_report is not None

    @property
    def gates_passed(self) -> bool | None:
        """Outcome of the last promotion attempt (None: never attempted)."""
        return None if self.gate_result is None else bool(self.gate_result.get("passed"))


@dataclasses.dataclass(frozen=True)
class RegistryEvent:
    """A row of ``lumos.model_events``."""

    event_id: int
    model_version: str
    method: str
    action: str
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    details: dict[str, Any]
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` did."""

    model_version: str
    method: str
    previous: str | None
    gate_result: GateResult
    forced: bool


@dataclasses.dataclass(frozen=True)
class RollbackResult:
    """What :func:`rollback` did: ``retired`` was production, ``restored`` is now (None: no
    production version, so the nightly runs the shipped default again)."""

    method: str
    retired: str
    restored: str | None


_ENTRY_SQL = """
SELECT mv.model_version, mv.method, mv.kind, mv.status, mv.checksum, mv.object_key, mv.metadata,
       mv.registered_at, mv.injection_report, mv.gate_result,
       (SELECT max(e.at) FROM lumos.model_events AS e
        WHERE e.model_version = mv.model_version AND e.to_status = mv.status
          AND e.from_status IS DISTINCT FROM e.to_status) AS status_since
FROM lumos.model_versions AS mv
"""
_STATUS_ORDER = "CASE mv.status WHEN 'production' THEN 0 WHEN 'candidate' THEN 1 ELSE 2 END"


def _entry(row: Any) -> RegistryEntry:
    return RegistryEntry(
        model_version=row.model_version, method=row.method, kind=row.kind, status=row.status, checksum=row.checksum,
        object_key=row.object_key, metadata=dict(row.metadata or {}), registered_at=row.registered_at,
        status_since=row.status_since or None, injection_report=row.injection_report, gate_result=row.gate_result,
    )


def _db_error(exc: sa.exc.DBAPIError, what: str) -> LumosError:
    message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if "permission denied" in message or "InsufficientPrivilege" in type(getattr(exc, "orig", exc)).__name__:
        return RegistryPermissionError(f"{what}: {message}")
    return RegistryError(f"{what}: {message}")


def get_version(engine: sa.Engine, version: str) -> RegistryEntry:
    """The registry row of ``version``.

    Raises
    ------
    RegistryError
        Not registered.
    """
    with engine.connect() as conn:
        row = conn.execute(sa.text(_ENTRY_SQL + " WHERE mv.model_version = :v"), {"v": version}).one_or_none()
    if row is None:
        raise RegistryError(f"model version {version!r} is not registered in lumos.model_versions (lumos model list)")
    return _entry(row)


def production_version(engine: sa.Engine, method: str) -> RegistryEntry | None:
    """The production version of ``method`` (None when it has none)."""
    with engine.connect() as conn:
        row = conn.execute(sa.text(_ENTRY_SQL + " WHERE mv.method = :m AND mv.status = 'production'"),
                           {"m": method}).one_or_none()
    return None if row is None else _entry(row)


def production_versions(engine: sa.Engine, methods: Sequence[str]) -> dict[str, str]:
    """``{method: production version}`` of those of ``methods`` that have one."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT method, model_version FROM lumos.model_versions WHERE status = 'production' "
            "AND method = ANY(:m)"), {"m": list(methods)}).all())


def list_versions(engine: sa.Engine, method: str | None = None, *, status: str | None = None) -> list[RegistryEntry]:
    """Registered versions (of ``method``, with ``status``): by method, production first, then
    candidates and retired ones, newest first."""
    if status is not None and status not in STATUSES:
        raise LumosValueError(f"status={status!r}: use one of {', '.join(STATUSES)}")
    where, params = [], {}
    if method:
        where.append("mv.method = :m")
        params["m"] = method
    if status:
        where.append("mv.status = :s")
        params["s"] = status
    sql = (_ENTRY_SQL + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY mv.method, {_STATUS_ORDER}, mv.registered_at DESC, mv.model_version DESC")
    with engine.connect() as conn:
        return [_entry(r) for r in conn.execute(sa.text(sql), params)]


def list_events(engine: sa.Engine, *, method: str | None = None, version: str | None = None,
                limit: int | None = 50) -> list[RegistryEvent]:
    """The registry's history, newest first."""
    where, params = [], {}
    if method:
        where.append("method = :m")
        params["m"] = method
    if version:
        where.append("model_version = :v")
        params["v"] = version
    sql = ("SELECT event_id, model_version, method, action, from_status, to_status, actor, reason, details, at "
           "FROM lumos.model_events" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY at DESC, event_id DESC" + (" LIMIT :limit" if limit else ""))
    if limit:
        params["limit"] = int(limit)
    with engine.connect() as conn:
        return [RegistryEvent(**{**r._asdict(), "details": dict(r.details or {})})
                for r in conn.execute(sa.text(sql), params)]


def register_candidate(engine: sa.Engine, *, model_version: str, method: str, checksum: str | None,
                       object_key: str | None, metadata: Mapping[str, Any] | None = None,
                       kind: str = "lumos") -> RegistryEntry:
    """Register a new version as a candidate, with the object key of its checkpoint.

    What the pipeline's writer role may do (``lumos_retrain``): it inserts the row, the database
    sets the status (a LUMOS version is always a candidate) and records a ``register`` event.

    Raises
    ------
    RegistryError
        The version string is already registered (a version names one set of weights for good).
    """
    try:
        with engine.begin() as conn:
            lock_methods(conn, [method])
            inserted = conn.execute(sa.text(
                "INSERT INTO lumos.model_versions (model_version, method, kind, checksum, metadata, object_key) "
                "VALUES (:v, :m, :k, :c, CAST(:meta AS jsonb), :key) ON CONFLICT (model_version) DO NOTHING "
                "RETURNING model_version"
            ), {"v": model_version, "m": method, "k": kind, "c": checksum, "key": object_key,
                "meta": json.dumps(dict(metadata or {}), sort_keys=True, default=str)}).scalar()
    except sa.exc.DBAPIError as exc:
        raise _db_error(exc, f"registering {model_version}") from None
    if inserted is None:
        raise RegistryError(f"model version {model_version!r} is already registered: use a new version string")
    return get_version(engine, model_version)


def _check_may_change(conn: sa.Connection, what: str) -> None:
    user, may = conn.execute(sa.text(
        "SELECT current_user, has_table_privilege('lumos.model_versions', 'UPDATE') "
        "AND has_table_privilege('lumos.model_events', 'INSERT')")).one()
    if not may:
        raise RegistryPermissionError(
            f"{what}: permission denied: {user!r} may not change the model registry; promotion, rollback and "
            "reports run as the schema owner (or a login it granted UPDATE on lumos.model_versions and INSERT "
            "on lumos.model_events); the pipeline's lumos_writer may only register new versions"
        )


def _lock(conn: sa.Connection, method: str) -> None:
    """Serialise registrations, promotions and rollbacks of ``method`` until the transaction ends."""
    lock_methods(conn, [method])


def lock_methods(conn: sa.Connection, methods: Iterable[str]) -> None:
    """Take the registry's advisory lock of every method in ``methods`` (sorted, so that two
    transactions cannot deadlock) until the transaction ends.

    A new version's status is set by the ``model_versions_initial_status`` trigger from the other
    rows of its method: the first version of a method becomes production. Two transactions
    registering the first version at once would both see no production row, and the second would
    fail on the one-production index; under the lock the second sees the first's row.
    """
    for method in sorted(set(methods)):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:ns), hashtext(:m))"),
                     {"ns": _LOCK_NAMESPACE, "m": method})


def _event(conn: sa.Connection, version: str, method: str, action: str, from_status: str | None, to_status: str,
           reason: str | None, details: Mapping[str, Any] | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO lumos.model_events (model_version, method, action, from_status, to_status, reason, details) "
        "VALUES (:v, :m, :a, :f, :t, :r, CAST(:d AS jsonb))"
    ), {"v": version, "m": method, "a": action, "f": from_status, "t": to_status, "r": reason,
        "d": json.dumps(dict(details or {}), sort_keys=True, default=str)})


def _set_status(conn: sa.Connection, version: str, status: str, gate_result: Mapping[str, Any] | None = None) -> None:
    if gate_result is None:
        conn.execute(sa.text("UPDATE lumos.model_versions SET status = :s WHERE model_version = :v"),
                     {"s": status, "v": version})
    else:
        conn.execute(sa.text("UPDATE lumos.model_versions SET status = :s, gate_result = CAST(:g AS jsonb) "
                             "WHERE model_version = :v"),
                     {"s": status, "v": version, "g": json.dumps(_json_safe(gate_result), sort_keys=True)})


def _json_safe(value: Any) -> Any:
    """Nested value with NaN/inf as None (PostgreSQL's jsonb rejects them)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


def report_model_sha256(report: Mapping[str, Any]) -> str | None:
    """The checksum of the LUMOS weights an injection report measured: ``lumos adapt``'s candidate
    (``adapt.model_sha256``) or ``lumos inject``'s model (``model.sha256``); None when it names none."""
    for section, key in (("adapt", "model_sha256"), ("model", "sha256")):
        value = (report.get(section) or {}).get(key) if isinstance(report.get(section), Mapping) else None
        if value:
            return str(value)
    return None


def attach_report(engine: sa.Engine, version: str, report: Mapping[str, Any], *,
                  source: str | None = None) -> RegistryEntry:
    """Store the injection report of ``version`` (``lumos inject``'s ``injection_report.json``).

    The report must come from the version's own checkpoint (``lumos inject --model``, or the
    ``lumos adapt`` run that made it); it replaces any earlier one, and a ``report`` event records its
    SHA-256 and ``source``.

    Raises
    ------
    LumosValueError
        The report has no populations with results of the version's method, or it names the weights
        it measured (:func:`report_model_sha256`) and they are not the version's registered checksum.
    RegistryPermissionError, RegistryError
    """
    report = _json_safe(dict(report))
    pops = _populations(report)
    try:
        with engine.begin() as conn:
            _check_may_change(conn, f"attaching a report to {version}")
            row = conn.execute(sa.text("SELECT method, status, checksum FROM lumos.model_versions "
                                       "WHERE model_version = :v FOR UPDATE"), {"v": version}).one_or_none()
            if row is None:
                raise RegistryError(f"model version {version!r} is not registered in lumos.model_versions")
            measured = report_model_sha256(report)
            if row.method in LUMOS_METHODS and row.checksum and measured and measured != row.checksum:
                raise LumosValueError(
                    f"the report was measured with the weights {measured[:12]}, but {version} is "
                    f"{row.checksum[:12]}: attach the report of the version's own checkpoint")
            with_method = [p for p, e in pops.items() if row.method in ((e or {}).get("methods") or {})]
            if not with_method:
                raise LumosValueError(
                    f"the report has no population with {row.method!r} results "
                    f"(populations: {sorted(pops) or 'none'}); give the injection_report.json of `lumos inject`"
                )
            text = json.dumps(report, sort_keys=True)
            conn.execute(sa.text("UPDATE lumos.model_versions SET injection_report = CAST(:r AS jsonb) "
                                 "WHERE model_version = :v"), {"r": text, "v": version})
            _event(conn, version, row.method, "report", row.status, row.status, None,
                   {"sha256": hashlib.sha256(text.encode()).hexdigest(), "source": source,
                    "populations": sorted(pops), "command": report.get("command")})
    except sa.exc.DBAPIError as exc:
        raise _db_error(exc, f"attaching a report to {version}") from None
    return get_version(engine, version)


def promote(engine: sa.Engine, version: str, *, gates: Gates | None = None, force: bool = False,
            reason: str | None = None) -> PromotionResult:
    """Make ``version`` the production version of its method if its report passes the gates.

    In one transaction, under a per-method lock (two promotions or rollbacks of a method never
    interleave; the second is gated against the first's result): the gates are evaluated against
    the current production version's report; on success the old production version becomes
    retired (``retire`` event) and ``version`` production (``promote`` event), with the gate result
    stored. On failure ``version`` keeps its status, the gate result with the reasons is stored, a
    ``reject`` event recorded, and :class:`GatesFailed` raised.

    Parameters
    ----------
    version : str
        A candidate (or a retired version, promoted again through the gates).
    gates : Gates, optional
    force : bool, keyword-only
        Promote even if the gates fail (the result is still recorded); needs ``reason``.
    reason : str, keyword-only
        Recorded with the events.

    Raises
    ------
    GatesFailed
        The gates failed (and not ``force``); the candidate stays a candidate.
    RegistryPermissionError
        The connected user may not change the registry.
    RegistryError
        Unknown version, already production, a LUMOS version without a checkpoint the nightly can
        run (no object key, not shipped: also with ``force``), or a database error.
    """
    gates = gates or Gates()
    if force and not (reason and reason.strip()):
        raise LumosValueError("--force needs a --reason (it is recorded with the promotion)")
    rejected: GateResult | None = None
    try:
        with engine.begin() as conn:
            _check_may_change(conn, f"promoting {version}")
            method = conn.execute(sa.text("SELECT method FROM lumos.model_versions WHERE model_version = :v"),
                                  {"v": version}).scalar()
            if method is None:
                raise RegistryError(f"model version {version!r} is not registered in lumos.model_versions")
            _lock(conn, method)
            cand = conn.execute(sa.text("SELECT model_version, status, injection_report, object_key "
                                        "FROM lumos.model_versions WHERE model_version = :v FOR UPDATE"),
                                {"v": version}).one()
            if cand.status == "production":
                raise RegistryError(f"{version} is already the production version of {method}")
            if method in LUMOS_METHODS and not cand.object_key and shipped_name(version) is None:
                raise RegistryError(
                    f"{version} has no object key and is not a shipped checkpoint, so the nightly could not run it; "
                    "register its checkpoint with its object key as a new version (`lumos_retrain` and "
                    "`register_candidate` do) and promote that one")
            prod = conn.execute(sa.text("SELECT model_version, injection_report FROM lumos.model_versions "
                                        "WHERE method = :m AND status = 'production' FOR UPDATE"),
                                {"m": method}).one_or_none()
            result = evaluate_gates(cand.injection_report, prod.injection_report if prod else None, gates,
                                    method=method, production_version=prod.model_version if prod else None)
            record = {**result.to_dict(), "gates": gates.to_dict(),
                      "production": prod.model_version if prod else None,
                      "evaluated_at": dt.datetime.now(dt.UTC).isoformat(),
                      "forced": bool(force and not result.passed)}
            if not result.passed and not force:
                _set_status(conn, version, cand.status, record)
                _event(conn, version, method, "reject", cand.status, cand.status, reason,
                       {"reasons": list(result.reasons), "production": record["production"]})
                rejected = result
            else:
                why = reason
                if force and not result.passed:
                    why = f"forced: {reason} (gates failed: {'; '.join(result.reasons)})"
                if prod is not None:
                    _set_status(conn, prod.model_version, "retired")
                    _event(conn, prod.model_version, method, "retire", "production", "retired",
                           f"superseded by {version}" + (f": {reason}" if reason else ""), {"successor": version})
                _set_status(conn, version, "production", record)
                _event(conn, version, method, "promote", cand.status, "production", why,
                       {"previous": prod.model_version if prod else None, "forced": record["forced"],
                        "gates_passed": result.passed})
    except sa.exc.DBAPIError as exc:
        raise _db_error(exc, f"promoting {version}") from None
    if rejected is not None:
        log.warning("%s stays a candidate: %s", version, "; ".join(rejected.reasons))
        raise GatesFailed(version, rejected)
    log.info("%s is now the production version of %s%s", version, method,
             f" (was {prod.model_version}, now retired)" if prod else "")
    return PromotionResult(model_version=version, method=method, previous=prod.model_version if prod else None,
                           gate_result=result, forced=bool(force and not result.passed))


def rollback(engine: sa.Engine, method: str, *, reason: str) -> RollbackResult:
    """Retire the production version of ``method`` and restore the previous one.

    The version restored is the most recently retired one that was superseded by a promotion (or
    retired by the V005 backfill); versions retired by a rollback are skipped, so successive
    rollbacks walk back through the promotion history instead of toggling. A LUMOS method without
    an earlier production version is left with none: the nightly then runs the shipped default
    (:func:`resolve_production`), which is what it ran before the first promotion.

    Raises
    ------
    RegistryError
        No production version, or (a classical method) no earlier production version to restore.
    RegistryPermissionError
    """
    if not (reason and reason.strip()):
        raise LumosValueError("a rollback needs a --reason (it is recorded)")
    try:
        with engine.begin() as conn:
            _check_may_change(conn, f"rolling back {method}")
            _lock(conn, method)
            prod = conn.execute(sa.text("SELECT model_version FROM lumos.model_versions "
                                        "WHERE method = :m AND status = 'production' FOR UPDATE"),
                                {"m": method}).scalar()
            if prod is None:
                raise RegistryError(f"{method} has no production version to roll back")
            previous = conn.execute(sa.text("""
                SELECT mv.model_version
                FROM lumos.model_versions AS mv
                JOIN LATERAL (
                    SELECT e.action, e.at, e.event_id FROM lumos.model_events AS e
                    WHERE e.model_version = mv.model_version AND e.to_status = 'retired'
                    ORDER BY e.at DESC, e.event_id DESC LIMIT 1
                ) AS last_retired ON true
                WHERE mv.method = :m AND mv.status = 'retired' AND last_retired.action <> 'rollback'
                ORDER BY last_retired.at DESC, last_retired.event_id DESC
                LIMIT 1
                FOR UPDATE OF mv
            """), {"m": method}).scalar()
            if previous is not None and method in LUMOS_METHODS and shipped_name(previous) is None:
                key = conn.execute(sa.text("SELECT object_key FROM lumos.model_versions WHERE model_version = :v"),
                                   {"v": previous}).scalar()
                if not key:
                    raise RegistryError(
                        f"{method}: the version to restore, {previous}, has no object key and is not a shipped "
                        "checkpoint, so the nightly could not run it; promote another version instead")
            if previous is None and method not in LUMOS_METHODS:
                raise RegistryError(
                    f"{method}: no earlier production version to roll back to from {prod}; "
                    "promote another version instead (lumos model promote VERSION)"
                )
            _set_status(conn, prod, "retired")
            _event(conn, prod, method, "rollback", "production", "retired", reason, {"restored": previous})
            if previous is not None:
                _set_status(conn, previous, "production")
                _event(conn, previous, method, "rollback", "retired", "production", reason, {"rolled_back": prod})
    except sa.exc.DBAPIError as exc:
        raise _db_error(exc, f"rolling back {method}") from None
    log.warning("%s: rolled back from %s to %s (%s)", method, prod,
                previous or "no production version: the nightly runs the shipped default", reason)
    return RollbackResult(method=method, retired=prod, restored=previous)


# ----------------------------------------------------------------------- what the nightly runs


def resolve_production(engine: sa.Engine, config: NightConfig) -> dict[str, str]:
    """Version each method of ``config`` runs tonight.

    Rules, per method: an explicitly configured version (``NightConfig.model_versions``, i.e.
    ``LUMOS_MODEL_VERSIONS``) wins, an operator override logged when it differs from the
    registry's production version; otherwise a method runs its production version from the
    registry (a classical one too: a promoted reprocessing version is what the nights then write);
    otherwise the default of :meth:`NightConfig.model_version` (the shipped checkpoint for LUMOS,
    ``<method>-1`` for classical methods).
    """
    production = production_versions(engine, config.methods)
    out = {}
    for method in config.methods:
        if method in config.model_versions:
            out[method] = config.model_versions[method]
            if method in production and production[method] != out[method]:
                log.warning("%s: running %s as configured (LUMOS_MODEL_VERSIONS), not the registry's production "
                            "version %s (operator override)", method, out[method], production[method])
        elif method in production:
            out[method] = production[method]
        else:
            out[method] = config.model_version(method)
    return out


def production_config(engine: sa.Engine, config: NightConfig) -> NightConfig:
    """``config`` with every method's version, and the LUMOS checkpoint, as the night should run them.

    Versions follow :func:`resolve_production`. The checkpoint: an explicitly configured one
    (``model_key`` / ``measure_options['model']``) is kept (operator override, logged); a LUMOS
    version from the registry runs its ``object_key`` (fetched from the store and checked against
    its SHA-256 on load) or, without one, the shipped checkpoint of that name. Such a version
    also brings the error floors it measured on the survey's training exposures (metadata
    ``error_floors``, written by ``lumos_retrain``): they become ``NightConfig.error_floors`` and
    replace the survey file's for every method, unless the metadata names another survey
    (``survey``), which is logged and leaves the survey file's floors.

    Raises
    ------
    RegistryError
        The production version has no object key and is not a shipped checkpoint.
    """
    versions = resolve_production(engine, config)
    replace: dict[str, Any] = {"model_versions": versions}
    explicit_checkpoint = config.model_key or config.measure_options.get("model")
    from_registry = [m for m in config.methods if m in LUMOS_METHODS and m not in config.model_versions
                     and versions[m] != config.model_version(m)]
    if explicit_checkpoint is not None:
        if from_registry:
            log.warning("LUMOS runs the configured checkpoint %s (operator override), not the registry's", explicit_checkpoint)
    else:
        for method in from_registry:
            entry = get_version(engine, versions[method])
            if entry.object_key:
                replace["model_key"] = entry.object_key
                replace["model_sha256"] = entry.checksum
            else:
                shipped = shipped_name(entry.model_version)
                if shipped is None:
                    raise RegistryError(
                        f"{method}: the production version {entry.model_version} has no object key and is not a "
                        "shipped checkpoint, so the nightly cannot run it; promote a version with a checkpoint "
                        "or set LUMOS_MODEL_KEY and LUMOS_MODEL_VERSIONS"
                    )
                replace["measure_options"] = {**config.measure_options, "model": shipped}
            log.info("%s: running the registry's production version %s (%s)", method, entry.model_version,
                     entry.object_key or "shipped checkpoint")
            floors = measured_floors(entry, config)
            if floors:
                replace["error_floors"] = floors
                log.info("%s: error floors measured by %s replace the survey file's: %s", method,
                         entry.model_version, ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                        for k, v in sorted(floors.items())))
    return dataclasses.replace(config, **replace)


def measured_floors(entry: RegistryEntry, config: NightConfig) -> dict[str, Any] | None:
    """The error floors (fractions) that ``entry`` measured on ``config``'s survey, or None.

    Read from the metadata ``error_floors`` (``flux_error_floor``, ``neighbour_error_floor``,
    ``method_error_floors`` and ``method_neighbour_error_floors``: method name -> fraction);
    missing or non-finite values are left to the survey file. Metadata naming another survey
    than ``config.survey`` gives None, with a warning: floors belong to a survey's images.
    """
    floors: dict[str, Any] = {}
    for name, value in (entry.metadata.get("error_floors") or {}).items():
        if name in FLOOR_NAMES and isinstance(value, (int, float)) and math.isfinite(value):
            floors[name] = float(value)
        elif name in METHOD_FLOOR_NAMES and isinstance(value, dict):
            own = {str(m): float(v) for m, v in value.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            if own:
                floors[name] = own
    if not floors:
        return None
    measured_on, running = entry.metadata.get("survey"), config.survey.name
    if measured_on is not None and measured_on != running:
        log.warning("%s measured its error floors on survey %r, the night reads survey %r: keeping the survey "
                    "file's floors", entry.model_version, measured_on, running)
        return None
    return floors


def shipped_name(version: str) -> str | None:
    """Shipped-model name (``SHIPPED_MODELS`` key) whose file is ``<version>.pt``."""
    from lumos_ops.lumos.checkpoint import SHIPPED_MODELS

    for name, filename in SHIPPED_MODELS.items():
        if os.path.splitext(filename)[0] == version:
            return name
    return None


def pinned_config(engine: sa.Engine, config: NightConfig, run_id: int) -> NightConfig:
    """``config`` with the versions, checkpoint and error floors that the plan of run ``run_id`` resolved.

    The plan records its (resolved) settings in ``lumos.pipeline_runs.settings``; the later tasks
    of the run (process, finish) use them, so a promotion during a night does not mix versions
    within it. Settings other than the model ones (cache directory, threads...) stay the worker's.

    Raises
    ------
    RegistryError
        No such run.
    """
    with engine.connect() as conn:
        settings = conn.execute(sa.text("SELECT settings FROM lumos.pipeline_runs WHERE run_id = :r"),
                                {"r": run_id}).one_or_none()
    if settings is None:
        raise RegistryError(f"run {run_id} is not in lumos.pipeline_runs")
    recorded = dict(settings[0] or {})
    options = {k: v for k, v in config.measure_options.items() if k != "model"}
    if (recorded.get("measure_options") or {}).get("model") is not None:
        options["model"] = recorded["measure_options"]["model"]
    versions = {**config.model_versions, **(recorded.get("model_versions") or {})}
    return dataclasses.replace(config, model_versions=versions, model_key=recorded.get("model_key"),
                               model_sha256=recorded.get("model_sha256"), measure_options=options,
                               error_floors=recorded.get("error_floors"))

