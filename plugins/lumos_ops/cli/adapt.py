"""``lumos adapt``: fine-tune LUMOS on a survey's exposures and validate it by injection on held-out ones."""

from __future__ import annotations

import argparse
import os
import sys

from lumos_ops.cli._survey_option import add_survey_option, survey_from_args
from lumos_ops.constants import INJECTION_SEPARATION_PX
from lumos_ops.lumos.shared_error import SHARED_ERROR_POPULATIONS
from lumos_ops.lumos.weights import shipped_models_help

__all__ = ["register", "adapt_command"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos adapt``."""
    p = subparsers.add_parser(
        "adapt",
        help="adapt LUMOS to a survey's exposures (TEAHUPOO + fine-tuning) and score it by injection-recovery",
        description="Splits the exposures by exposure (seeded) into training and held-out sets, cuts TEAHUPOO "
                    "stamps on the training exposures' backgrounds under the reference flux prior, fine-tunes the "
                    "base model (eq. 12 pair term where galaxies repeat), then injects GalSim galaxies into the "
                    "held-out exposures and measures them through the nightly code path with the base model, the "
                    "candidate and the classical methods. Writes OUT/model.pt, OUT/injection_report.json and "
                    "OUT/injection_report.png. Rerun with the same --out to continue an interrupted run "
                    "(docs/adapt.md).",
    )
    p.add_argument("--exposures", required=True, nargs="+", help="directory, glob (quote it) or FITS files")
    p.add_argument("--catalog", required=True, help="external catalogue (CSV or Parquet): shapes, targets")
    p.add_argument("--out", required=True, help="output directory (reuse it to resume)")
    p.add_argument("--base-model", default=None,
                   help=f"checkpoint file or shipped name to start from: {shipped_models_help()} (default: default)")
    p.add_argument("--n-stamps", type=int, default=60_000, help="TEAHUPOO stamps (default 60000)")
    p.add_argument("--epochs", type=int, default=14, help="fine-tuning epochs (default 14)")
    p.add_argument("--holdout", type=float, default=0.25, help="fraction of each band's exposures held out (default 0.25)")
    p.add_argument("--last-layer", action="store_true", help="fine-tune only the output layer (default: all layers)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--lr-step", type=int, default=10, help="epochs between learning-rate divisions by 10 (default 10)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-galaxies", type=int, default=300, help="injected galaxies per population (default 300)")
    p.add_argument("--n-place", type=int, default=5, help="placements of each injected galaxy (default 5)")
    p.add_argument("--populations", nargs="+", default=["sersic"], choices=["sersic", "knots", "blended"],
                   help="injected populations of the report and the registry's gates (default sersic)")
    p.add_argument("--shared-error-populations", nargs="+", default=list(SHARED_ERROR_POPULATIONS),
                   choices=["sersic", "knots", "blended"],
                   help="populations the co-adds' shared-error term is measured on (default sersic; those not "
                        "in --populations are injected for the candidate alone)")
    p.add_argument("--spacing", type=int, default=INJECTION_SEPARATION_PX,
                   help=f"least distance between injected galaxies (pixels, default {INJECTION_SEPARATION_PX}: no injected light "
                        "in another target's annulus or LUMOS stamp)")
    p.add_argument("--psf-profile", choices=["stars", "kolmogorov", "moffat"], default="stars",
                   help="PSF of the injected galaxies (default stars: each exposure's effective PSF built from its own "
                        "stars, a Kolmogorov where it has too few; kolmogorov: at each exposure's FWHM; moffat: the "
                        "measurement's own, FWHM and beta of the exposure)")
    p.add_argument("--training-psf", choices=["stars", "model"], default=None,
                   help="PSF of the TEAHUPOO training galaxies (default stars: each training exposure's effective PSF "
                        "built from its own stars, the model channel still the measurement's Moffat; model: that "
                        "Moffat, each galaxy exactly its model channel, the default with --truth-mismatch)")
    p.add_argument("--train-anywhere", dest="clear_training_positions", action="store_false",
                   help="cut the TEAHUPOO backgrounds around any position (default: only where the training "
                        "exposures' own sources are as far as the injection keeps its galaxies, 6 px)")
    p.add_argument("--stamp-background", choices=["median", "masked_annulus", "base"], default="masked_annulus",
                   help="the candidate's stamp background (default masked_annulus; base: the base model's); "
                        "docs/likelihood.md section 6")
    p.add_argument("--classical-methods", nargs="+", default=["aperture", "modelfit", "optimal"],
                   choices=["aperture", "modelfit", "optimal"])
    p.add_argument("--rescale", choices=["all", "prior", "none"], default="all",
                   help="what the ratio s of the training exposures' blank-sky pixel noise to the base model's "
                        "training pixel noise scales: the normalisation and the flux prior (all, default), the "
                        "prior's range only (prior) or nothing (none)")
    p.add_argument("--no-noise-rescale", dest="rescale", action="store_const", const="none",
                   help="the same as --rescale none")
    p.add_argument("--truth-mismatch", action="store_true",
                   help="train on galaxies that differ from their catalogued model (PSF profile and width, size, "
                   "knots: lumos_ops.sim.truth_mismatch.TRUTH_MISMATCH); default: galaxies equal to their model")
    p.add_argument("--floor-snr-range", type=float, nargs=2, default=(50.0, 150.0), metavar=("LOW", "HIGH"),
                   help="log-uniform true-SNR range of the galaxies injected into the training exposures to measure "
                        "the error floors (default 50 150: the floor is read from rows at measured SNR >= 50)")
    p.add_argument("--keep-error-floor", dest="measure_error_floor", action="store_false",
                   help="measure the held-out exposures with the survey's error floors (default: the floors the "
                        "candidate asks for on galaxies injected into the training exposures, written to OUT/survey.json)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--balanced-weights", dest="balanced_weights", action="store_const", const=True, default=None,
                         help="weight the fine-tuning loss by g(matched-filter flux) / g(true flux): the same "
                              "likelihood, with the faint stamps' share of the loss (docs/likelihood.md §15)")
    weights.add_argument("--importance-weights", dest="balanced_weights", action="store_const", const=False,
                         help="weight it by the importance weights 1 / g(true flux) alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_survey_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=adapt_command)


def adapt_command(args: argparse.Namespace) -> int:
    """Body of ``lumos adapt``; prints the targets of base and candidate."""
    from lumos_ops.evaluation.injection_report import missed_by
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.adapt import AdaptConfig, adapt
    from lumos_ops.sim.truth_mismatch import TRUTH_MISMATCH

    config = AdaptConfig(
        holdout=args.holdout, n_stamps=args.n_stamps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_step=args.lr_step, train_layers="last" if args.last_layer else "all", n_galaxies=args.n_galaxies,
        n_place=args.n_place, populations=tuple(args.populations),
        shared_error_populations=tuple(args.shared_error_populations), classical_methods=tuple(args.classical_methods),
        spacing=args.spacing, psf_profile=args.psf_profile, training_psf=args.training_psf or ("model" if args.truth_mismatch else "stars"),
        seed=args.seed, device=args.device, num_threads=args.threads, progress=not args.quiet,
        rescale=args.rescale, clear_training_positions=args.clear_training_positions,
        stamp_background=None if args.stamp_background == "base" else args.stamp_background,
        truth_mismatch=dict(TRUTH_MISMATCH) if args.truth_mismatch else None,
        measure_error_floor=args.measure_error_floor, floor_snr_range=tuple(args.floor_snr_range),
        **({} if args.balanced_weights is None else {"balanced_weights": args.balanced_weights}),
    )
    exposures = args.exposures[0] if len(args.exposures) == 1 else args.exposures
    result = adapt(exposures, read_catalog(args.catalog), args.out, config, base_model=args.base_model,
                   survey=survey_from_args(args))
    print(f"lumos adapt: {len(result.train_exposures)} training, {len(result.heldout_exposures)} held-out exposures; "
          f"candidate {result.model_path} (sha256 {result.model_sha256[:12]})", file=sys.stderr)
    noise = result.report["adapt"]["pixel_noise"]
    scaled = {"all": "normalisation and flux prior", "prior": "flux prior", "none": "nothing"}[args.rescale]
    print(f"pixel noise: training exposures {noise['survey_noise']:.4g} e-/s (median), base model "
          f"{noise['base_noise']:.4g} e-/s; {scaled} x {noise['factor']:.4g}", file=sys.stderr)
    shared = result.report["adapt"]["shared_error"]
    edges = ["inf" if e is None else f"{e:g}" for e in shared["snr_edges"]]
    print("shared-error term recorded in the candidate (rho by measured SNR): "
          + ", ".join(f"{lo}-{hi}: {rho:.3f}" for lo, hi, rho in zip(edges[:-1], edges[1:], shared["rho"])), file=sys.stderr)
    floors = result.report["adapt"]["error_floor"]
    if floors["measured"]:
        flux = floors["flux"]
        own = "".join(f", {m} {v:.4f}" for m, v in sorted((floors.get("method_error_floors") or {}).items()))
        own_near = "".join(f", {m} {v:.4f}"
                           for m, v in sorted((floors.get("method_neighbour_error_floors") or {}).items()))
        measured = flux.get("floor") is not None and flux.get("floor") == flux.get("floor")
        flux_text = (f"flux {floors['flux_error_floor']:.4f}{_pm(flux.get('floor_err'))}" if measured else
                     f"flux {floors['flux_error_floor']:.4f} (the survey's: too few bright rows to measure it)")
        print(f"error floors measured on the training exposures ({flux['n']} rows at SNR >= {flux['min_snr']:g}): "
              f"{flux_text}{own}, neighbour "
              f"{floors['neighbour_error_floor']:.4f}{own_near} (the survey's: "
              f"{floors['survey_floors']['flux_error_floor']:.4f}, {floors['survey_floors']['neighbour_error_floor']:.4f}); "
              f"the held-out exposures were measured with them; run the survey with --survey "
              f"{result.model_path.parent / 'survey.json'}", file=sys.stderr)
    for population, entry in result.report["populations"].items():
        floor = entry["methods"].get("lumos", {}).get("error_floor")
        if floor and floor["asked"]["floor"] == floor["asked"]["floor"]:  # NaN: too few bright rows
            print(f"error floor ({population}, held-out): measured with {floor['applied']:.4f}; the candidate's rows "
                  f"at SNR >= {floor['asked']['min_snr']:g} ask for {floor['asked']['floor']:.4f}"
                  f"{_pm(floor['asked'].get('floor_err'))} "
                  f"(flux_error_floor in the survey file, docs/likelihood.md §11)", file=sys.stderr)
        correction = entry["methods"].get("lumos", {}).get("flux_correction")
        if correction:
            frames = ", ".join(f"{os.path.basename(f)} {c:.4f}" for f, c in correction["by_frame"].items())
            print(f"PSF flux corrections ({population}, held-out, the candidate's median per exposure; "
                  f"docs/likelihood.md §14): {frames}", file=sys.stderr)
        near = (floor or {}).get("neighbour_asked")
        if near and near["floor"] == near["floor"]:
            print(f"neighbour error floor ({population}, held-out): measured with {floor['neighbour_applied']:.4f}; the "
                  f"candidate's blended rows at SNR >= {near['min_snr']:g} ask for {near['floor']:.4f} "
                  f"(neighbour_error_floor in the survey file)", file=sys.stderr)
    for line in heldout_lines(result.report):
        print(line, file=sys.stderr)
    transfer = result.report["adapt"].get("floor_transfer")
    if transfer and not transfer["carries_over"]:
        print(f"warning: the floor measured on the training exposures ({transfer['applied']:.4f} ± "
              f"{transfer['applied_err']:.4f}) is not what the held-out rows ask for ({transfer['asked']:.4f} ± "
              f"{transfer['asked_err']:.4f}; {transfer['z']:+.1f} sigma): it differs between exposures; more "
              f"training exposures average over more of them (docs/adapt.md, stage 5)", file=sys.stderr)
    base = {(r["population"], r["target"]): r for r in result.report["base"]["targets"]}
    print(f"{'population':10s} {'base':>8s} {'adapted':>8s}  target")
    for row in result.report["targets"]:
        b = base.get((row["population"], row["target"]))
        bval = f"{b['value']:8.3f}" if b and b["value"] is not None else f"{'-':>8s}"
        cval = f"{row['value']:8.3f}" if row["value"] is not None else f"{'-':>8s}"
        print(f"{row['population']:10s} {bval} {cval}  {'MET ' if row['met'] else 'miss'} {row['target']}"
              f"{missed_by(row)}")
    print(f"report: {result.report_path}")
    return 0


def heldout_lines(report: dict) -> list[str]:
    """What the candidate's held-out placements share and the tails of their pulls, per population
    (``lumos inject``'s lines: :func:`lumos_ops.cli.inject.shared_line`, :func:`~lumos_ops.cli.inject.tails_line`):
    whether a co-add excess comes from an error the exposures share or from the tails, which the
    co-adds' ``coadd_outlier_fraction`` allows for."""
    from lumos_ops.cli.inject import shared_line, tails_line

    lines = []
    for population, entry in report["populations"].items():
        scores = entry["methods"].get("lumos")
        if scores:
            lines += [line for line in (shared_line(population, "lumos", scores), tails_line(population, "lumos", scores))
                      if line]
    return lines


def _pm(error: float | None) -> str:
    """`` ± error`` (4 decimals), empty when the error is missing or NaN."""
    return f" ± {error:.4f}" if error is not None and error == error else ""
