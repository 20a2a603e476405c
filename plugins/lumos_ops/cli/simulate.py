"""``lumos simulate survey`` and ``lumos simulate training-set``."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from lumos_ops.cli._survey_option import add_survey_option, survey_from_args
from lumos_ops.exceptions import InputFileError

__all__ = ["register", "resolve_exposures"]


def resolve_exposures(spec: str) -> list[str]:
    """FITS files named by a directory (searched recursively for ``*.fits``) or a glob pattern.

    Returns
    -------
    list of str
        Sorted paths.

    Raises
    ------
    InputFileError
        Nothing matches.
    """
    if os.path.isdir(spec):
        paths = sorted(str(p) for p in Path(spec).rglob("*.fits"))
    else:
        paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    if not paths:
        raise InputFileError(f"{spec}: no FITS exposures found; give a directory or a glob such as 'sim/exposures/**/*.fits'")
    return paths


def _survey(args: argparse.Namespace) -> int:
    from lumos_ops.sim import SurveyConfig, load_survey_config, simulate_survey

    overrides = {
        "n_galaxies": args.n_galaxies,
        "bands": tuple(args.bands) if args.bands else None,
        "ccd_shape": tuple(args.ccd_shape) if args.ccd_shape else None,
        "n_ccds": args.n_ccds,
        "n_exposures": args.n_exposures,
        "n_epochs": args.n_epochs,
        "nights": args.nights,
        "seed": args.seed,
        "threads": args.threads,
    }
    if args.config:
        config = load_survey_config(args.config, **overrides)
    else:
        config = SurveyConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    manifest = simulate_survey(config, args.out, progress=not args.quiet)
    print(
        f"wrote {len(manifest.exposure_paths)} CCD images ({manifest.n_exposures} exposures), "
        f"{manifest.n_galaxies} galaxies, {manifest.n_truth_rows} truth rows to {manifest.out_dir} "
        f"in {manifest.elapsed_s:.1f} s"
    )
    return 0


def _training_set(args: argparse.Namespace) -> int:
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.sim import TeahupooConfig, generate_training_set
    from lumos_ops.survey import use_survey

    survey = survey_from_args(args)
    config = TeahupooConfig(
        pixel_scale=survey.pixel_scale,  # the stamps' galaxies and models at the survey's pixels (arcsec)
        n_stamps=args.n_stamps,
        stamp_size=args.size,
        shard_size=args.shard_size,
        seed=args.seed,
        flux_source=args.flux_source,
        edge_margin=args.edge_margin,
        target_clearance=args.target_clearance,
        clearance_fraction=args.clearance_fraction,
        neighbour_fraction=args.neighbour_fraction,
        flux_population=args.flux_population,
        flux_count_slope=args.flux_count_slope,
        shape_population=args.shape_population,
        shape_count_slope=args.shape_count_slope,
        population_i_range=tuple(args.population_i_range),
        background_scale_range=tuple(args.background_scale_range),
        psf_scale_range=tuple(args.psf_scale_range),
        truth_psf_fwhm_scatter=args.truth_psf_fwhm_scatter,
        truth_psf_beta_range=None if args.truth_psf_beta_range is None else tuple(args.truth_psf_beta_range),
        truth_r50_scatter=args.truth_r50_scatter,
        knot_fraction=args.knot_fraction,
        knot_flux_range=tuple(args.knot_flux_range),
        sky_removed_range=tuple(args.sky_removed_range),
        device=args.device,
        threads=args.threads,
    )
    paths = resolve_exposures(args.exposures)
    catalog = read_catalog(args.catalog)
    with use_survey(survey):
        manifest = generate_training_set(config, paths, catalog, args.out, progress=not args.quiet)
    print(
        f"wrote {manifest.n_stamps} stamps ({manifest.stamp_size}x{manifest.stamp_size}, "
        f"{len(manifest.shard_paths)} shards) to {manifest.out_dir}: {manifest.stamps_per_s:.1f} stamps/s"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``simulate survey`` and ``simulate training-set``."""
    parser = subparsers.add_parser("simulate", help="simulate a PAUCam-like survey or a TEAHUPOO training set")
    sub = parser.add_subparsers(dest="simulate_command", metavar="WHAT", required=True)

    survey = sub.add_parser("survey", help="FITS exposures + catalog.parquet + truth.parquet (ARCHITECTURE layout)")
    survey.add_argument("--out", required=True, help="output directory")
    survey.add_argument("--config", help="YAML or JSON file of SurveyConfig options; flags below override it")
    survey.add_argument("--n-galaxies", type=int, help="catalogue galaxies (default: 9 per arcmin^2)")
    survey.add_argument("--bands", nargs="+", metavar="BAND", help="narrow bands, e.g. NB615 NB685")
    survey.add_argument("--ccd-shape", type=int, nargs=2, metavar=("ROWS", "COLS"), help="CCD shape (default 4096 2048)")
    survey.add_argument("--n-ccds", type=int, help="CCDs per exposure (1-8)")
    survey.add_argument("--n-exposures", type=int, help="exposures per band and epoch")
    survey.add_argument("--n-epochs", type=int, choices=(1, 2), help="camera epochs")
    survey.add_argument("--nights", type=int, help="nights per epoch")
    survey.add_argument("--seed", type=int, help="random seed")
    survey.add_argument("--threads", type=int, help="torch CPU threads while rendering (default 1)")
    survey.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    survey.set_defaults(func=_survey)

    training = sub.add_parser("training-set", help="TEAHUPOO stamps on background cutouts of existing exposures")
    training.add_argument("--exposures", required=True, help="directory (searched for *.fits) or glob of exposures")
    training.add_argument("--catalog", required=True, help="catalogue (CSV or Parquet) to sample galaxies from")
    training.add_argument("--out", required=True, help="output directory")
    training.add_argument("--n-stamps", type=int, required=True, help="number of stamps")
    training.add_argument("--size", type=int, default=60, help="stamp side in pixels (default 60)")
    training.add_argument("--shard-size", type=int, default=4096, help="stamps per shard (default 4096)")
    training.add_argument("--flux-source", default="auto",
                          choices=("auto", "catalog", "flat_spectrum", "band_distribution", "reference_prior"),
                          help="band flux from the catalogue row's flux_nJy_<band> column, a flat spectrum at i_auto, "
                          "band_distribution (paper §2.2): drawn independently of the galaxy from the "
                          "catalogue's flux distribution in that band, or reference_prior: drawn from the "
                          "likelihood-training prior (docs/likelihood.md), negative fluxes included")
    training.add_argument("--edge-margin", type=int, help="min distance (px) of stamp centres from the CCD edge "
                          "(default size/2: stamps entirely on the CCD)")
    training.add_argument("--target-clearance", type=float, default=None, metavar="PX",
                          help="cut stamps only around positions at least PX pixels from the exposures' own detected "
                          "sources (the injection's placement rule; default: any position)")
    training.add_argument("--clearance-fraction", type=float, default=1.0, metavar="F",
                          help="with --target-clearance: the share of stamps cut at clear positions, the rest anywhere "
                          "(default 1)")
    training.add_argument("--neighbour-fraction", type=float, default=0.0,
                          help="fraction of stamps with an added neighbouring galaxy (blending studies)")
    training.add_argument("--flux-population", type=int, default=0, metavar="N",
                          help="with --flux-source band_distribution: draw the band fluxes from N galaxies of a "
                          "seeded population instead of the catalogue rows (default 0 = the catalogue)")
    training.add_argument("--flux-count-slope", type=float, default=0.33, metavar="S",
                          help="d log10 N / dm of that population (default 0.33, the survey's counts; "
                          "0 = uniform in i 17.5-23, a brightness-balanced set)")
    training.add_argument("--shape-population", type=int, default=0, metavar="N",
                          help="draw galaxy shapes and i_auto from N galaxies of a seeded population instead of "
                          "the catalogue rows (default 0 = the catalogue)")
    training.add_argument("--shape-count-slope", type=float, default=0.33, metavar="S",
                          help="d log10 N / dm of the shape population (0 = uniform in i)")
    training.add_argument("--population-i-range", type=float, nargs=2, default=(17.5, 23.0), metavar=("BRIGHT", "FAINT"),
                          help="i-band range (AB) of the flux and shape populations (default 17.5 23)")
    training.add_argument("--background-scale-range", type=float, nargs=2, default=(1.0, 1.0), metavar=("LOW", "HIGH"),
                          help="multiply each background cutout by a factor log-uniform in this range (default 1 1)")
    mismatch = training.add_argument_group(
        "truth-model mismatch", "draw the simulated galaxy away from its model channel (lumos_ops.sim.truth_mismatch)")
    mismatch.add_argument("--psf-scale-range", type=float, nargs=2, default=(1.0, 1.0), metavar=("LOW", "HIGH"),
                          help="PSF FWHM x a factor log-uniform in this range, galaxy and model alike (default 1 1)")
    mismatch.add_argument("--truth-psf-fwhm-scatter", type=float, default=0.0, metavar="S",
                          help="log-normal scatter of the galaxy's PSF FWHM about the model's (default 0)")
    mismatch.add_argument("--truth-psf-beta-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                          help="Moffat beta of the galaxy's PSF, uniform (default: the model's)")
    mismatch.add_argument("--truth-r50-scatter", type=float, default=0.0, metavar="S",
                          help="log-normal scatter of the galaxy's half-light radius about the catalogue's (default 0)")
    mismatch.add_argument("--knot-fraction", type=float, default=0.0,
                          help="fraction of galaxies with point-like knots (default 0)")
    mismatch.add_argument("--knot-flux-range", type=float, nargs=2, default=(0.05, 0.3), metavar=("LOW", "HIGH"),
                          help="share of such a galaxy's flux in its knots, uniform (default 0.05 0.3)")
    training.add_argument("--sky-removed-range", type=float, nargs=2, default=(0.0, 0.0), metavar=("LOW", "HIGH"),
                          help="subtract this share (uniform) of each background cutout's median sky (default 0 0)")
    training.add_argument("--device", help="renderer torch device, e.g. cuda (default cpu)")
    training.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_survey_option(training)
    training.add_argument("--threads", type=int, default=1,
                          help="torch CPU threads while rendering (default 1; same seed + threads => same bytes)")
    training.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    training.set_defaults(func=_training_set)
