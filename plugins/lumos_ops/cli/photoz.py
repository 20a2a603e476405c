"""``lumos photoz``: template-fitting photo-z on co-added NB fluxes and their validation."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run_photoz_command", "validate_photoz_command", "colours_command"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``photoz run`` and ``photoz validate``."""
    parser = subparsers.add_parser("photoz", help="photometric redshifts from narrow-band co-adds and their validation")
    sub = parser.add_subparsers(dest="photoz_command", metavar="STEP", required=True)
    run = sub.add_parser(
        "run",
        help="fit photo-z to a co-add table",
        description=(
            "Read a co-add table (CSV or Parquet, one row per source x band: ref_id, band, flux, flux_err "
            "in nJy; NaN flux = missing band), fit the simulator's CWW template grid and write one row per "
            "source: z_mode, z_mean, z_median, z_sigma68, odds, qz, chi2, best template..."
        ),
    )
    run.add_argument("--coadds", required=True, help="co-add table (.csv or .parquet)")
    run.add_argument("--out", required=True,
                     help="output table (.parquet or .csv; checked before the fit, written atomically)")
    run.add_argument("--method", default=None, help="photometry method to use when the table has a method column")
    run.add_argument("--flux-column", default="flux", help="flux column in nJy (default flux; e.g. pdf_peak)")
    run.add_argument("--err-column", default="flux_err", help="flux error column in nJy (default flux_err; e.g. pdf_sigma68)")
    run.add_argument("--prior", action="store_true", help="apply the magnitude-dependent redshift prior")
    run.add_argument("--catalog", default=None,
                     help="catalogue with ref_id and i_auto (AB mag) for the prior's magnitudes; needs --prior "
                          "(default, and for sources it lacks or with NaN i_auto: the fitted i)")
    run.add_argument("--error-floor", type=float, default=0.0, help="fractional flux error added in quadrature (default 0)")
    run.add_argument("--clip-sigma", type=float, default=None,
                     help="drop the worst band while its residual exceeds this many sigma (up to 3 bands; default off)")
    run.add_argument("--odds-window", type=float, default=0.01, help="ODDS half-width in units of 1+z (default 0.01)")
    run.add_argument("--z-max", type=float, default=1.8, help="largest redshift of the grid (default 1.8)")
    run.add_argument("--z-step", type=float, default=0.005, help="redshift grid step (default 0.005)")
    run.set_defaults(func=run_photoz_command)

    val = sub.add_parser(
        "validate",
        help="photo-z metrics against spectroscopic redshifts",
        description=(
            "Join a photo-z table with a catalogue (ref_id, zspec, i_auto) and write DIR/photoz_metrics.json "
            "and DIR/photoz_validation.png: sigma68, NMAD, outlier fraction and bias of "
            "(z_phot - z_spec) / (1 + z_spec), overall, per i_auto bin and for the best half by quality."
        ),
    )
    val.add_argument("--catalog", required=True, help="catalogue with ref_id, zspec, i_auto (.csv or .parquet)")
    val.add_argument("--photoz", required=True, help="table written by lumos photoz run")
    val.add_argument("--report", required=True, help="output directory (created if needed; files written atomically)")
    val.add_argument("--z-column", default="z_mode", help="photo-z point estimate column (default z_mode)")
    val.add_argument("--quality", default="qz", choices=["qz", "odds", "z_sigma68", "chi2"],
                     help="quality proxy for the best-fraction cut (default qz)")
    val.add_argument("--best-fraction", type=float, default=0.5,
                     help="fraction of best sources also reported, in (0, 1] (default 0.5)")
    val.add_argument("--outlier-threshold", type=float, default=0.02, help="|dz| outlier limit (default 0.02, PAUS NB)")
    val.set_defaults(func=validate_photoz_command)

    col = sub.add_parser(
        "colours",
        help="colour-histogram widths (sigma68, sigma95) of co-add tables",
        description=(
            "Compare photometries by the width of a narrow-band colour histogram (paper §6.1.2; narrower is "
            "better). Each --table is a co-add table; one holding several methods gives one row per method. "
            "With --catalog (ref_id, flux_nJy_<band>) the true colour is subtracted."
        ),
    )
    col.add_argument("--table", action="append", required=True, metavar="[NAME=]PATH",
                     help="co-add table (.csv or .parquet); repeat to compare several")
    col.add_argument("--bands", nargs=2, required=True, metavar=("BAND_A", "BAND_B"), help="colour BAND_A - BAND_B")
    col.add_argument("--catalog", default=None, help="true fluxes (flux_nJy_<band>) to subtract the true colour")
    col.add_argument("--kind", choices=["mag", "ratio"], default="mag", help="magnitude difference or flux ratio")
    col.add_argument("--all-sources", action="store_true",
                     help="measure each photometry on all its sources (default: sources common to all)")
    col.add_argument("--json", default=None, help="also write the table to this JSON file")
    col.set_defaults(func=colours_command)


def run_photoz_command(args: argparse.Namespace) -> int:
    """Body of ``lumos photoz run``."""
    from lumos_ops.photoz.fit import PhotozConfig
    from lumos_ops.photoz.prior import MagnitudePrior
    from lumos_ops.photoz.run import run_photoz
    from lumos_ops.photoz.templates import TemplateGridConfig

    frame = run_photoz(
        args.coadds,
        args.out,
        method=args.method,
        flux_column=args.flux_column,
        err_column=args.err_column,
        catalog=args.catalog,
        prior=MagnitudePrior() if args.prior else None,
        config=PhotozConfig(error_floor=args.error_floor, odds_window=args.odds_window, clip_sigma=args.clip_sigma),
        grid_config=TemplateGridConfig(z_max=args.z_max, z_step=args.z_step),
    )
    n_ok = int(frame["z_mode"].notna().sum())
    print(f"lumos photoz run: {n_ok}/{len(frame)} sources with a photo-z -> {args.out}", file=sys.stderr)
    return 0


def validate_photoz_command(args: argparse.Namespace) -> int:
    """Body of ``lumos photoz validate``; prints the overall metrics."""
    from lumos_ops.photoz.report import REPORT_JSON, REPORT_PNG, validate_photoz

    report = validate_photoz(
        args.catalog,
        args.photoz,
        args.report,
        z_column=args.z_column,
        quality_column=args.quality,
        larger_is_better=args.quality == "odds",
        best_fraction=args.best_fraction,
        outlier_threshold=args.outlier_threshold,
    )
    print(f"{'fraction':>8} {'i_auto':>10} {'n':>6} {'sigma68':>8} {'NMAD':>8} {'outliers':>8} {'bias':>8}")
    for row in report["metrics"]:
        vals = [row[k] if row[k] is not None else float("nan") for k in ("sigma68", "nmad", "outlier_fraction", "bias")]
        print(f"{row['fraction']:>8.2f} {row['bin']:>10} {row['n']:>6d} {vals[0]:>8.4f} {vals[1]:>8.4f} {vals[2]:>8.3f} {vals[3]:>+8.4f}")
    print(f"lumos photoz validate: wrote {args.report}/{REPORT_JSON} and {args.report}/{REPORT_PNG}", file=sys.stderr)
    return 0


def colours_command(args: argparse.Namespace) -> int:
    """Body of ``lumos photoz colours``; prints one line per photometry."""
    import json
    from pathlib import Path

    from lumos_ops.io.atomic import write_text_atomic
    from lumos_ops.photoz.colour_report import colour_widths_from_files
    from lumos_ops.photoz.outputs import check_output_file

    if args.json:
        check_output_file(args.json, "--json")
    tables = {}
    for spec in args.table:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        tables[name] = path
    widths = colour_widths_from_files(
        tables, args.bands[0], args.bands[1], catalog=args.catalog, kind=args.kind, common=not args.all_sources
    )
    print(f"{'photometry':<24} {'n':>6} {'median':>8} {'sigma68':>8} {'sigma95':>8}")
    for row in widths.itertuples():
        print(f"{row.name:<24} {row.n:>6d} {row.median:>8.4f} {row.sigma68:>8.4f} {row.sigma95:>8.4f}")
    if args.json:
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in widths.to_dict(orient="records")]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps({"bands": args.bands, "kind": args.kind, "widths": rows}, indent=2) + "\n")
    return 0
