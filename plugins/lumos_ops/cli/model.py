"""``lumos model``: the model registry (``docs/registry.md``).

``list`` the versions and their status, ``attach-report`` an injection report, ``promote`` a
candidate through the gates (or ``--force`` it with a recorded reason), ``rollback`` to the
previous production version, ``history`` of the registry, ``shared-error`` (no database) to
record in a copy of a model the co-add term an injection run measured
(:mod:`lumos_ops.lumos.shared_error`), ``drop-input`` (no database) to make a copy of a model
blind to a scalar input (:mod:`lumos_ops.lumos.drop_inputs`), and ``resolve`` what tonight's run
would use. The database
URL comes from ``--url``, else ``$LUMOS_DATABASE_URL``, else the local PostgreSQL of
``lumos db start``. Changing the registry needs the schema owner (see the docs).
"""

from __future__ import annotations

import argparse

__all__ = ["register"]

_URL_HELP = "SQLAlchemy URL (default: $LUMOS_DATABASE_URL, else the local PostgreSQL of `lumos db start`)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos model list | attach-report | promote | rollback | history | shared-error | drop-input | resolve``."""
    parser = subparsers.add_parser("model", help="model registry: list, attach reports, promote, roll back")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="registered versions with their status (production first)")
    p.add_argument("--method", help="only this method (e.g. lumos)")
    p.add_argument("--status", choices=("candidate", "production", "retired"), help="only versions with this status")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_list)

    p = sub.add_parser("attach-report", help="store the injection report (lumos inject) the gates read")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("report", metavar="REPORT.json", help="injection_report.json written by `lumos inject --model ...`")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_attach)

    p = sub.add_parser("promote", help="make a candidate the production version if its report passes the gates")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--gates", metavar="FILE", help="gate thresholds (TOML or .json; default: the documented defaults)")
    p.add_argument("--force", action="store_true", help="promote even if the gates fail (needs --reason; recorded)")
    p.add_argument("--reason", help="why (recorded with the events)")
    p.add_argument("--dry-run", action="store_true", help="evaluate the gates against production and change nothing")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="retire the production version and restore the previous one")
    p.add_argument("--method", required=True, help="method to roll back (e.g. lumos)")
    p.add_argument("--reason", required=True, help="why (recorded)")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_rollback)

    p = sub.add_parser("history", help="the registry's events (register, report, promote, reject, rollback), newest first")
    p.add_argument("--method")
    p.add_argument("--version")
    p.add_argument("--limit", type=_count, default=50, help="most events shown (default 50; 0: all)")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_history)

    p = sub.add_parser("shared-error", help="record the co-add shared-error term measured by `lumos inject` in a copy of its model",
                       description="Measure the part of the LUMOS error that the exposures of one galaxy share (placements "
                                   "of each injected galaxy, lumos_ops.lumos.shared_error) on an injection run's "
                                   "table and write the model that measured it, with that term in its metadata, "
                                   "to OUT: its co-adds are then widened for it. `lumos adapt` does this itself.")
    p.add_argument("injection", metavar="INJECTION_DIR", help="output directory of `lumos inject` (table + report)")
    p.add_argument("--out", required=True, metavar="OUT.pt", help="checkpoint to write")
    p.add_argument("--populations", nargs="+",
                   help="populations to pool (default: sersic, as lumos adapt; add knots to pool them)")
    p.set_defaults(func=_shared_error)

    p = sub.add_parser("drop-input", help="write a copy of a model blind to some of its scalar inputs (no retraining)",
                       description="Write MODEL to OUT with the named scalar inputs multiplied by zero: the network "
                                   "then reads each as its training mean, whatever the exposure says. Weights, "
                                   "normalisation and metadata are carried over (lumos_ops.lumos.drop_inputs). "
                                   "`background` (the stamp's sky level) is the one to drop for frames whose sky "
                                   "is subtracted or whose level differs from the training survey's.")
    p.add_argument("model", metavar="MODEL", help="checkpoint path or shipped-model name")
    p.add_argument("--input", dest="inputs", nargs="+", required=True, metavar="NAME",
                   help="scalar inputs to drop (i_auto, ccd_x, ccd_y, background)")
    p.add_argument("--out", required=True, metavar="OUT.pt", help="checkpoint to write")
    p.add_argument("--reason", default="", help="recorded in the metadata (derived_from.reason)")
    p.set_defaults(func=_drop_input)

    p = sub.add_parser("resolve", help="versions, checkpoint and error floors the nightly run would use now (LUMOS_* settings + registry)")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_resolve)


def _engine(args: argparse.Namespace):
    from lumos_ops.pipeline.database import database_url_from_env, make_engine

    return make_engine(args.url or database_url_from_env())


def _when(value, seconds: bool = False) -> str:
    """A registry time (datetime or ISO 8601 text) as ``YYYY-MM-DD HH:MM[:SS]`` UTC; ``-`` when unset."""
    import datetime as dt

    if value is None:
        return "-"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _count(text: str) -> int:
    """An ``--limit`` value: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 0 (0: all)")
    return value


def _list(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.registry import list_versions, shipped_name

    engine = _engine(args)
    try:
        entries = list_versions(engine, args.method, status=args.status)
    finally:
        engine.dispose()
    if not entries:
        print("(no model versions registered)" if not (args.method or args.status) else "(no matching versions)")
        return 0
    rows = [("METHOD", "VERSION", "STATUS", "SINCE (UTC)", "REPORT", "GATES", "CHECKPOINT")]
    for e in entries:
        gates = {None: "-", True: "passed", False: "failed"}[e.gates_passed]
        if e.gate_result and e.gate_result.get("forced"):
            gates = "forced"
        checkpoint = e.object_key or ("-" if e.kind != "lumos" else "shipped" if shipped_name(e.model_version) else "none")
        rows.append((e.method, e.model_version, e.status, _when(e.status_since or e.registered_at),
                     "yes" if e.has_report else "no", gates, checkpoint))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    for e in entries:
        if e.status == "candidate" and e.gates_passed is False:
            evaluated = e.gate_result.get("evaluated_at")  # when the gates ran, not when the status last changed
            when = _when(evaluated if isinstance(evaluated, str) else e.status_since)
            print(f"\n{e.model_version} failed its gates ({when} UTC):")
            for reason in e.gate_result.get("reasons", []):
                print(f"  - {reason}")
    return 0


def _attach(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.pipeline.registry import attach_report

    path = Path(args.report)
    try:
        report = json.loads(path.read_text())
    except OSError as exc:
        raise LumosValueError(f"{path}: cannot read the report ({exc.strerror})") from None
    except ValueError as exc:
        raise LumosValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(report, dict):
        raise LumosValueError(f"{path}: not an injection report (a JSON object with 'populations')")
    engine = _engine(args)
    try:
        entry = attach_report(engine, args.version, report, source=str(path))
    finally:
        engine.dispose()
    print(f"{entry.model_version} ({entry.method}, {entry.status}): injection report attached from {path} "
          f"(populations: {', '.join(sorted(report.get('populations', {})))})")
    return 0


def _print_checks(result) -> None:
    n_ok = sum(1 for c in result.checks if c["passed"])
    print(f"gates: {n_ok} of {len(result.checks)} checks passed")
    for note in result.notes:
        print(f"  note: {note}")
    for reason in result.reasons:
        print(f"  FAILED: {reason}")


def _promote(args: argparse.Namespace) -> int:
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.pipeline.registry import Gates, evaluate_gates, get_version, production_version, promote

    gates = Gates.from_file(args.gates) if args.gates else Gates()
    if args.force and not args.reason:
        raise LumosValueError("--force needs --reason (it is recorded with the promotion)")
    engine = _engine(args)
    try:
        if args.dry_run:
            entry = get_version(engine, args.version)
            prod = production_version(engine, entry.method)
            result = evaluate_gates(entry.injection_report, prod.injection_report if prod else None, gates,
                                    method=entry.method, production_version=prod.model_version if prod else None)
            print(f"{entry.model_version} ({entry.method}, {entry.status}) against "
                  f"{prod.model_version if prod else 'no production version'}: "
                  f"{'would be promoted' if result.passed else 'would stay ' + entry.status} (dry run, nothing changed)")
            _print_checks(result)
            return 0 if result.passed else 1
        done = promote(engine, args.version, gates=gates, force=args.force, reason=args.reason)
    finally:
        engine.dispose()
    previous = f"; {done.previous} retired" if done.previous else ""
    forced = " (FORCED past failing gates)" if done.forced else ""
    print(f"{done.model_version} is now the production version of {done.method}{previous}{forced}")
    _print_checks(done.gate_result)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.registry import rollback

    engine = _engine(args)
    try:
        done = rollback(engine, args.method, reason=args.reason)
    finally:
        engine.dispose()
    restored = (f"{done.restored} (production)" if done.restored else
                "no production version: the nightly runs the shipped default again")
    print(f"{done.method}: rolled back from {done.retired} (now retired) to {restored}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.registry import list_events

    engine = _engine(args)
    try:
        events = list_events(engine, method=args.method, version=args.version, limit=args.limit or None)
    finally:
        engine.dispose()
    if not events:
        print("(no events)")
        return 0
    for e in events:
        change = f"{e.from_status} -> {e.to_status}" if e.from_status and e.from_status != e.to_status else e.to_status
        print(f"{_when(e.at, seconds=True)}Z  {e.method:<10} {e.model_version:<28} {e.action:<8} {change:<24} "
              f"by {e.actor}" + (f": {e.reason}" if e.reason else ""))
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.config import PipelineSettings
    from lumos_ops.pipeline.registry import production_config

    settings = PipelineSettings.from_env()
    engine = _engine(args)
    try:
        config = production_config(engine, settings.night)
    finally:
        engine.dispose()
    for method in config.methods:
        source = "configured (override)" if method in settings.night.model_versions else "registry / default"
        print(f"{method}: {config.model_versions[method]}  [{source}]")
    checkpoint = config.model_key or config.measure_options.get("model")
    if config.needs_gpu:
        print(f"LUMOS checkpoint: {checkpoint or 'shipped default'}")
    survey = config.survey
    source = "measured by the production LUMOS version" if config.error_floors else "the survey file's"
    own = "".join(f", {m} {v:g}" for m, v in sorted(survey.method_error_floors.items()))
    own_near = "".join(f", {m} {v:g}" for m, v in sorted(survey.method_neighbour_error_floors.items()))
    print(f"error floors: flux {survey.flux_error_floor:g}{own}, neighbours {survey.neighbour_error_floor:g}{own_near} "
          f"[{source}; survey {survey.name}]")
    return 0


def _drop_input(args: argparse.Namespace) -> int:
    from lumos_ops.lumos.drop_inputs import drop_inputs

    keep = drop_inputs(args.model, args.inputs, args.out, reason=args.reason)
    print(f"{args.out}: {args.model} reading {', '.join(keep) or 'no scalar input'}")
    return 0


def _shared_error(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from lumos_ops.exceptions import InputFileError
    from lumos_ops.lumos.checkpoint import load_checkpoint, resolve_model_path
    from lumos_ops.lumos.shared_error import SHARED_ERROR_POPULATIONS, record_shared_error

    root = Path(args.injection)
    table_path, report_path = root / "injection_table.parquet", root / "injection_report.json"
    for path in (table_path, report_path):
        if not path.is_file():
            raise InputFileError(f"{path}: missing; give the --out directory of a `lumos inject` run")
    model = (json.loads(report_path.read_text()).get("model") or {})
    if not model.get("path"):
        raise InputFileError(f"{report_path}: records no LUMOS model; run `lumos inject` with the lumos method")
    # the recorded path, or on another machine the shipped model of that name
    path = model["path"] if Path(model["path"]).is_file() else str(resolve_model_path(model.get("name")))
    loaded = load_checkpoint(path, device="cpu")
    if loaded.sha256 != model.get("sha256"):
        raise InputFileError(f"{report_path}: measured with weights {model.get('sha256')}, but {path} holds "
                             f"{loaded.sha256}; rerun `lumos inject` with this model")
    table = pd.read_parquet(table_path)
    populations = args.populations or [p for p in SHARED_ERROR_POPULATIONS if p in set(table["population"])] or None
    shared = record_shared_error(path, table, args.out, populations=populations, source=f"lumos inject {root}")
    print(f"{args.out}: {path} with the shared error of {shared.source}")
    cuts = list(shared.residual_cuts)
    split = "".join(f"  rho, residual {lo}-{hi}" for lo, hi in zip(["-inf", *cuts], [*cuts, "inf"])) if cuts else ""
    print(f"measured SNR    galaxies  rho{split}")
    rows = list(zip(*shared.rho_by_residual)) if cuts else [()] * len(shared.rho)
    for lo, hi, n, rho, by in zip(shared.snr_edges[:-1], shared.snr_edges[1:], shared.n_galaxies, shared.rho, rows):
        print(f"{lo:5g} - {hi:<7g} {n:8d}  {rho:.3f}" + "".join(f"  {r:>20.3f}" for r in by))
    return 0
