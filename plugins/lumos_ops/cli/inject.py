"""``lumos inject``: injection-recovery of GalSim galaxies in real frames, scored at fixed truth."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from lumos_ops.cli._survey_option import add_survey_option
from lumos_ops.constants import INJECTION_SEPARATION_PX
from lumos_ops.lumos.weights import shipped_models_help

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from lumos_ops.survey import Survey

__all__ = ["register", "inject_command"]

REPORT_JSON = "injection_report.json"
REPORT_PNG = "injection_report.png"
TABLE = "injection_table.parquet"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos inject``."""
    p = subparsers.add_parser(
        "inject",
        help="inject GalSim galaxies into real frames, measure them with the production code, score at fixed truth",
        description="Injection-recovery (docs/likelihood.md): GalSim galaxies (Sersic, bulge+disk+knots, blended "
                    "pairs) added to real frames whose headers are mapped as a user would, measured through "
                    "read_exposure -> measure_exposure, scored per bin of true SNR and true flux, with co-adds of "
                    "2, 5 and 10 placements. Writes injection_report.json, injection_report.png and the table. "
                    "With --survey (or $LUMOS_SURVEY) the frames are that survey's exposures and keep their own "
                    "headers: band, gain, exposure time and PSF are read through its header mapping, and its "
                    "error floors and flux correction apply, exactly as `lumos measure --survey` reads them.",
    )
    p.add_argument("--frames", nargs="+", help="real FITS frames (.fits, .fits.bz2, .fits.gz); required unless --rescore")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--rescore", action="store_true",
                   help="measure nothing: score the --out directory's injection_table.parquet again with this code "
                        "and rewrite its report and plot (the run's command, configuration and model are kept)")
    p.add_argument("--model", default=None, help=f"LUMOS checkpoint file or shipped name: {shipped_models_help()} (default: default)")
    p.add_argument("--methods", nargs="+", default=["aperture", "optimal", "lumos"], help="photometry methods")
    p.add_argument("--populations", nargs="+", default=["sersic", "knots", "blended"],
                   choices=["sersic", "knots", "blended"],
                   help="galaxy populations; each draws its galaxies from its own seed, so a run of one draws what "
                        "a run of all draws for it. Blended pairs (no isolated calibrator in their copies) take the "
                        "aperture correction of the same frame's Sersic galaxies when these are injected too, as a "
                        "survey exposure's blends take its isolated targets' (default: all three)")
    p.add_argument("--n-galaxies", type=int, default=200, help="galaxies per population")
    p.add_argument("--n-place", type=int, default=10, help="placements (exposures) of each galaxy")
    p.add_argument("--snr-range", type=float, nargs=2, default=(1.0, 150.0), metavar=("LOW", "HIGH"),
                   help="true SNR range, log-uniform")
    p.add_argument("--noise-ratio", type=float, default=None,
                   help="frame pixel noise / the model's training pixel noise (sets EXPTIME; default 1; not with "
                        "--survey, where the header's exposure time holds)")
    psf = p.add_mutually_exclusive_group()
    psf.add_argument("--psf-fwhm", type=float, default=None,
                     help="PSF FWHM in pixels for every frame (default: the second-moment width of each frame's "
                          "most compact sources, which counts the pixel and the wings; not with --survey, whose header "
                          "mapping gives it)")
    psf.add_argument("--psf-from-stars", action="store_true",
                     help="PSF FWHM of each frame: the Moffat FWHM fitted to its own stars (photometry.psf_stars), "
                          "as a survey file's from_stars gives it (not with --survey: set from_stars in its file)")
    p.add_argument("--psf-profile", choices=["kolmogorov", "moffat", "stars"], default="kolmogorov",
                   help="PSF of the injected galaxies (default kolmogorov at the frame's FWHM; moffat: the measurement's "
                        "own model, with the frame's beta where its survey reads one; stars: the frame's effective PSF "
                        "built from its own stars)")
    p.add_argument("--band", default=None,
                   help="FILTER written into the frames (a band the model knows; default NB685; not with --survey, "
                        "where each frame's own band holds)")
    p.add_argument("--catalog", default=None,
                   help="catalogue (CSV or Parquet, the measure contract) whose r50, sersic_n and q the injected "
                        "galaxies' shapes are drawn from (default: fixed ranges, r50 0.3-1.5 arcsec, n 0.5-4, q 0.3-1)")
    p.add_argument("--spacing", type=int, default=INJECTION_SEPARATION_PX,
                   help=f"least distance (pixels) between injected galaxies in one frame realisation (default "
                        f"{INJECTION_SEPARATION_PX}: no injected light in another target's annulus; closer, faint fluxes read low)")
    p.add_argument("--min-clearance", type=float, default=10.0,
                   help="smallest distance (pixels) of an injected galaxy from the frame's own detected sources; "
                        "lower it for a small or crowded frame")
    p.add_argument("--psf-flux-correction", action="store_true",
                   help="measure with each exposure's PSF flux correction (docs/likelihood.md §14), whatever the "
                        "survey says; galaxies drawn with another PSF than the frame's stars' (the kolmogorov "
                        "default) are then moved by the difference")
    p.add_argument("--aperture-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="put each exposure's fluxes on the scale of its bright isolated targets' large apertures "
                        "(docs/likelihood.md §16), or not (--no-aperture-correction); default: the survey's. A survey "
                        "with psf_flux_correction uses the stars' correction instead where a frame has the stars")
    p.add_argument("--aperture-correction-per-copy", action="store_true",
                   help="fit the aperture correction on each frame copy's own calibrators, as if the copy were an "
                        "exposure of its few injected targets (default: the copies of one frame are one exposure and "
                        "share one fit, as a survey exposure's targets do)")
    p.add_argument("--coadd-outlier-fraction", type=float, default=None, metavar="EPS",
                   help="the LUMOS co-adds' prior probability of a bad exposure (docs/likelihood.md §3; default: the "
                        "survey's coadd_outlier_fraction; with --rescore, the run's survey's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    add_survey_option(p)
    p.set_defaults(func=inject_command)


_MAPPING_OPTIONS: tuple[tuple[str, str], ...] = (
    ("band", "--band"), ("noise_ratio", "--noise-ratio"), ("psf_fwhm", "--psf-fwhm"), ("psf_from_stars", "--psf-from-stars"),
)


def _survey_file(args: argparse.Namespace) -> str | None:
    """The survey file the frames belong to (``--survey``, else ``$LUMOS_SURVEY``), or None: map them
    as PAUS exposures. Options that only the mapping uses are refused with one."""
    import os

    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.survey import SURVEY_ENV

    chosen = args.survey or os.environ.get(SURVEY_ENV) or None
    if chosen is None:
        return None
    given = [flag for key, flag in _MAPPING_OPTIONS if getattr(args, key) not in (None, False)]
    if given:
        source = "--survey" if args.survey else f"${SURVEY_ENV}"
        raise LumosValueError(f"lumos inject: {', '.join(given)} map frames without a survey; with {source} {chosen} "
                              "each frame's header gives them (drop the option, or unset the survey)")
    return chosen


def _model_record(model: str | None) -> dict[str, str]:
    """The checkpoint LUMOS measured with: resolved path, version (file stem) and weights SHA-256."""
    from lumos_ops.lumos.checkpoint import load_checkpoint, resolve_model_path

    path = resolve_model_path(model)
    return {"name": model or "default", "path": str(path), "version": path.stem, "sha256": load_checkpoint(path).sha256}


def inject_command(args: argparse.Namespace) -> int:
    """Body of ``lumos inject``; prints the targets table: measured against the true flux, then
    (where scored) against ``model_flux``, the flux the catalogue model reads from the noiseless
    galaxy (docs/likelihood.md §4)."""
    import dataclasses
    from pathlib import Path

    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.survey import paus_survey, resolve_survey

    out = Path(args.out)
    if args.rescore:
        return _rescore(out, args.coadd_outlier_fraction)
    if not args.frames:
        raise LumosValueError("lumos inject: give --frames (or --rescore with the --out of an earlier run)")
    survey_file = _survey_file(args)
    survey = None if survey_file is None else resolve_survey(survey_file)
    if args.psf_flux_correction:
        survey = dataclasses.replace(survey or paus_survey(), psf_flux_correction=True)
    if args.aperture_correction is not None:
        survey = dataclasses.replace(survey or paus_survey(), aperture_correction=args.aperture_correction)
    shapes = None if args.catalog is None else read_catalog(args.catalog)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _inject(args, out, survey, survey_file, shapes)
    except BaseException:
        if created and not any(out.iterdir()):  # a failed run leaves no empty --out behind
            out.rmdir()
        raise


def _inject(args: argparse.Namespace, out: Path, survey: Survey | None, survey_file: str | None,
            shapes: pd.DataFrame | None) -> int:
    """:func:`inject_command` once its inputs are read and ``out`` exists: inject, measure, score, write."""
    import pandas as pd

    from lumos_ops.evaluation.injection import InjectionConfig, aperture_factors, population_seed, run_injection
    from lumos_ops.evaluation.injection_report import score_injection
    from lumos_ops.provenance import code_provenance
    from lumos_ops.survey import paus_survey, use_survey

    psf = {f: args.psf_fwhm for f in args.frames} if args.psf_fwhm else None
    tables: dict[str, pd.DataFrame] = {}
    fallback: dict[tuple[str, str], float] = {}
    mapping = {key: value for key, value in (("band", args.band), ("noise_ratio", args.noise_ratio)) if value is not None}
    with use_survey(survey):
        # the isolated Sersic galaxies first: their factors serve the frames whose copies have no calibrator
        for population in sorted(args.populations, key=lambda p: p != "sersic"):
            config = InjectionConfig(population=population, n_galaxies=args.n_galaxies, n_place=args.n_place,
                                     snr_range=tuple(args.snr_range), psf_profile=args.psf_profile,
                                     psf_from_stars=args.psf_from_stars, spacing=args.spacing,
                                     min_clearance=args.min_clearance, seed=population_seed(args.seed, population),
                                     pool_aperture_correction=not args.aperture_correction_per_copy, **mapping)
            if not args.quiet:
                print(f"lumos inject: {population}: {args.n_galaxies} galaxies x {args.n_place} placements", file=sys.stderr)
            tables[population] = run_injection(args.frames, config, methods=args.methods, model=args.model,
                                               psf_fwhm_px=psf, keep_headers=survey_file is not None, shapes=shapes,
                                               aperture_fallback=fallback or None)
            if population == "sersic":
                fallback = aperture_factors(tables[population])
    table = pd.concat([tables[p] for p in args.populations], ignore_index=True)
    eps = (survey or paus_survey()).coadd_outlier_fraction if args.coadd_outlier_fraction is None else args.coadd_outlier_fraction
    report = score_injection(table, outlier_fraction=eps)
    report["command"] = " ".join(["lumos", "inject", *sys.argv[2:]]) if sys.argv[1:2] == ["inject"] else None
    report["config"] = {k: v for k, v in vars(args).items() if k != "func"}
    report["survey"] = None if survey is None else {"file": survey_file, "name": survey.name,
                                                    "psf_flux_correction": survey.psf_flux_correction,
                                                    "flux_error_floor": survey.flux_error_floor}
    report["aperture_correction"] = (survey or paus_survey()).aperture_correction
    report["aperture_correction_scope"] = "copy" if args.aperture_correction_per_copy else "frame"
    report["model"] = _model_record(args.model) if "lumos" in args.methods else None
    report["code"] = code_provenance()
    table.to_parquet(out / TABLE, index=False)
    _write_report(out, report)
    return 0


def _write_report(out, report: dict) -> None:
    """Write ``report`` (JSON, atomically) and its plot into ``out`` and print its targets, floors and
    shared errors."""
    import numpy as np

    from lumos_ops.evaluation.injection_report import json_clean, missed_by, plot_injection
    from lumos_ops.io.atomic import write_text_atomic

    write_text_atomic(out / REPORT_JSON, json.dumps(json_clean(report), indent=2, allow_nan=False))
    plot_injection(report, out / REPORT_PNG)
    for row in report["targets"]:
        model = row.get("value_vs_model_flux")
        against = f"{model:8.3f}" if model is not None and np.isfinite(model) else " " * 8
        value = row["value"]
        if value is None or not np.isfinite(value):  # every bin the target reads held too few rows
            print(f"{row['population']:8s} n/a  {'':8s} {'':8s}  {row['target']} (not evaluated: too few rows)")
            continue
        print(f"{row['population']:8s} {'MET ' if row['met'] else 'miss'} {value:8.3f}{_pm_row(row)} {against}  "
              f"{row['target']}{missed_by(row)}")
    for population, entry in report["populations"].items():
        for method, scores in entry["methods"].items():
            floor = scores.get("error_floor")
            if floor and np.isfinite(floor["asked"]["floor"]):
                asked = floor["asked"]
                err = asked.get("floor_err")
                pm = f" ± {err:.4f}" if err is not None and np.isfinite(err) else ""
                print(f"{population:8s} {method:9s} error floor: applied {floor['applied']:.4f}, the rows at measured "
                      f"SNR >= {asked['min_snr']:g} ask {asked['floor']:.4f}{pm} (n {asked['n']}, pull without it "
                      f"{asked['pull_before']:.2f})")
            near = (floor or {}).get("neighbour_asked")
            if near and np.isfinite(near["floor"]):
                print(f"{population:8s} {method:9s} neighbour error floor: applied {floor['neighbour_applied']:.4f}, the "
                      f"blended rows at measured SNR >= {near['min_snr']:g} ask {near['floor']:.4f} (n {near['n']}, "
                      f"pull without it {near['pull_before']:.2f})")
            corrected = scores.get("aperture_correction")
            if corrected:
                factors = ", ".join(f"{os.path.basename(f)} {c:.4f}" for f, c in corrected["by_frame"].items())
                print(f"{population:8s} {method:9s} aperture correction (docs/likelihood.md §16): "
                      f"{100 * corrected['corrected_share']:.0f} % of the rows corrected; median factor per frame: "
                      f"{factors}")
            for line in (shared_line(population, method, scores), tails_line(population, method, scores)):
                if line:
                    print(line)
            flags = scores.get("domain_flags")
            if flags:
                shares = ", ".join(f"{name} {100 * share:.0f} %" for name, share in flags.items())
                print(f"{population:8s} {method:9s} measured outside its training domain: {shares} of the rows")


def _rescore(out, outlier_fraction: float | None = None) -> int:
    """``lumos inject --rescore``: the stored table of ``out`` scored again by this code, its LUMOS
    co-adds with ``outlier_fraction`` (None: that of the run's survey file where it still reads,
    else the current survey's)."""
    import datetime

    import pandas as pd

    from lumos_ops import __version__
    from lumos_ops.evaluation.injection_report import score_injection
    from lumos_ops.exceptions import BadInputError, InputFileError
    from lumos_ops.provenance import code_provenance

    table_path, report_path = out / TABLE, out / REPORT_JSON
    for path in (table_path, report_path):
        if not path.is_file():
            raise InputFileError(f"{path}: missing; --rescore needs the --out directory of a `lumos inject` run")
    try:
        old = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{report_path}: not JSON ({exc}); rerun `lumos inject` to remake it") from None
    if outlier_fraction is None:
        from lumos_ops.survey import current_survey, load_survey

        survey_file = (old.get("survey") or {}).get("file")
        try:
            survey = load_survey(survey_file) if survey_file else current_survey()
        except BadInputError:
            survey = current_survey()
        outlier_fraction = survey.coadd_outlier_fraction
    report = score_injection(pd.read_parquet(table_path), outlier_fraction=outlier_fraction)
    for key in ("command", "config", "model", "survey", "aperture_correction", "aperture_correction_scope", "code"):
        if key in old:
            report[key] = old[key]
    report["rescored"] = [*old.get("rescored", []), {"at": datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"), "lumos_ops": __version__, "code": code_provenance()}]
    _write_report(out, report)
    return 0


def shared_line(population: str, method: str, scores: dict) -> str | None:
    """The printed summary of what a galaxy's placements share at true SNR 2-50 (the report's
    ``shared_pull`` bins with at least 10 galaxies), or None when no bin has them."""
    import numpy as np

    shared = [b for b in scores.get("shared_pull", []) if 2.0 <= b["lo"] < 50.0 and b["n_galaxies"] >= 10
              and b["rho"] is not None and np.isfinite(b["rho"])]
    if not shared:
        return None
    worst = max(np.nan_to_num(b["coadd5_factor"], nan=1.0) for b in shared)
    return (f"{population:8s} {method:9s} shared by a galaxy's placements, true SNR "
            f"{shared[0]['lo']:g}-{shared[-1]['hi']:g}: rho " + " / ".join(f"{b['rho']:+.3f}" for b in shared)
            + f" (5-exposure co-adds up to {worst:.2f}x too narrow)")


def tails_line(population: str, method: str, scores: dict) -> str | None:
    """The printed summary of the pulls' tails at true SNR 2-50 (the report's ``pull_tails`` bins
    with at least 10 pulls): the share above +3 and the pull of 5-exposure co-adds of independent
    exposures with that distribution, or None when no bin has them. Set beside :func:`shared_line`,
    it tells a co-add excess the tails make from one the exposures share."""
    import numpy as np

    tails = [b for b in scores.get("pull_tails", []) if 2.0 <= b["lo"] < 50.0 and b["n"] >= 10
             and b["independent_coadd_sigma68"] is not None and np.isfinite(b["independent_coadd_sigma68"])]
    if not tails:
        return None
    return (f"{population:8s} {method:9s} pulls' tails, true SNR {tails[0]['lo']:g}-{tails[-1]['hi']:g}: above +3 "
            + " / ".join(f"{100 * b['above_3']:.1f}" for b in tails) + " % (Gaussian 0.1 %); 5-exposure co-add pull "
            "of independent exposures " + " / ".join(f"{b['independent_coadd_sigma68']:.2f}" for b in tails))


def _pm_row(row: dict) -> str:
    """`` ± error`` of a target row (3 decimals), blanks of that width when it has none."""
    error = row.get("error")
    return f" ± {error:5.3f}" if error is not None and error == error else " " * 8
