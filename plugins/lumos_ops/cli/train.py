"""``lumos train``, ``lumos transfer`` and ``lumos validate``: the LUMOS network's life cycle."""

from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

from lumos_ops.cli._survey_option import add_survey_option, survey_from_args
from lumos_ops.lumos.weights import shipped_models_help

__all__ = ["register"]


def _exposure_paths(spec: str) -> list[str]:
    from lumos_ops.exceptions import InputFileError

    if os.path.isdir(spec):
        paths = sorted(glob.glob(os.path.join(spec, "**", "*.fits"), recursive=True))
    else:
        paths = sorted(glob.glob(spec))
    if not paths:
        raise InputFileError(f"{spec}: no FITS exposures found (give a directory or a glob)")
    return paths


_RECIPE_ONLY = ("n_stamps", "workers")
"""Options of ``lumos train`` that only a ``--recipe`` reads."""
_TRAINING_SET_ONLY = ("training_set", "ccd_shape", "survey")
"""Options of ``lumos train`` that only a ``--training-set`` run reads (a recipe makes its own set)."""


def _check_train_options(args: argparse.Namespace) -> None:
    """Refuse options that the chosen mode (``--recipe`` or ``--training-set``) would ignore."""
    from lumos_ops.exceptions import LumosValueError

    def given(names: tuple[str, ...]) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]

    if args.recipe:
        ignored = given(_TRAINING_SET_ONLY)
        if ignored:
            raise LumosValueError(f"{', '.join(ignored)}: not read with --recipe, which simulates its own training set "
                                  "and survey; drop them, or give --training-set without --recipe")
        return
    if not args.training_set:
        raise LumosValueError("give --training-set DIR or --recipe NAME")
    if args.init_model:
        raise LumosValueError("--init-model starts a fine-tuning --recipe NAME; lumos adapt fine-tunes a model on a survey's exposures")
    ignored = given(_RECIPE_ONLY)
    if ignored:
        raise LumosValueError(f"{', '.join(ignored)}: recipe only (--recipe NAME); drop them to train on --training-set")


def _cmd_train(args: argparse.Namespace) -> int:
    from lumos_ops.lumos.train import TrainConfig, infer_ccd_shape, train

    _check_train_options(args)

    options = {
        "arch": args.arch,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_step": args.lr_step,
        "lr_gamma": args.lr_gamma,
        "seed": args.seed,
        "device": args.device,
        "amp": not args.no_amp,
        "max_train": args.max_train,
        "max_val": args.max_val,
        "num_threads": args.threads,
        "drop_inputs": tuple(args.drop_input) if args.drop_input else None,
        "frozen_bn_epochs": args.frozen_bn_epochs,
        "balanced_weights": True if args.balanced_weights else None,
        "progress": not args.quiet,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.recipe:
        from lumos_ops.lumos.recipe import run_recipe

        if args.init_model:
            from lumos_ops.lumos.checkpoint import resolve_model_path

            options["init_model"] = str(resolve_model_path(args.init_model))
        metrics = run_recipe(args.recipe, args.out, n_stamps=args.n_stamps, train_options=options,
                             resume=args.resume, progress=not args.quiet,
                             workers=1 if args.workers is None else args.workers)
    else:
        ccd_shape = tuple(args.ccd_shape) if args.ccd_shape else infer_ccd_shape(args.training_set)
        metrics = train(args.training_set, args.out, TrainConfig(ccd_shape=ccd_shape, **options), resume=args.resume,
                        survey=survey_from_args(args))
    v = metrics["validation"]
    model_path = Path(args.out) / "model" / "model.pt" if args.recipe else Path(args.out) / "model.pt"
    print(f"val loss {metrics['val_loss']:.4f}  bias {v['bias']:+.3f}  sigma68 {v['sigma68']:.3f}  "
          f"68% coverage {v['coverage68']:.3f}  -> {model_path} (sha256 {metrics['model_sha256'][:12]})")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.transfer import TransferConfig, transfer
    from lumos_ops.survey import use_survey

    options = {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "lr_step": args.lr_step,
        "max_pairs": args.max_pairs, "max_sim": args.max_sim, "pair_weight": args.pair_weight,
        "default_zero_point": args.default_zero_point, "seed": args.seed, "device": args.device,
        "progress": not args.quiet,
    }
    config = TransferConfig(**{k: v for k, v in options.items() if v is not None})
    with use_survey(survey_from_args(args)):
        metrics = transfer(args.model, _exposure_paths(args.exposures), read_catalog(args.catalog), args.sim_set,
                           args.out, config)
    print(f"{metrics['n_pairs']} pairs: D sigma68 {metrics['d_sigma68_before']:.3f} -> {metrics['d_sigma68_after']:.3f}; "
          f"model {Path(args.out) / 'model.pt'}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from lumos_ops.evaluation.targets import format_targets
    from lumos_ops.evaluation.validate import validate
    from lumos_ops.evaluation.validate_config import ValidateConfig
    from lumos_ops.exceptions import LumosValueError

    config = ValidateConfig(
        baselines=tuple(args.baselines), split=args.split, max_stamps=args.max_stamps, min_stamps=args.min_stamps,
        binning=args.binning, estimator=args.estimator, no_ccd_model=args.no_ccd_model, deblend_stamps=args.deblend_stamps,
        deblend_fluxes=tuple(args.deblend_fluxes), seed=args.seed,
        batch_size=args.batch_size, device=args.device, progress=not args.quiet,
    )
    if bool(args.exposures) != bool(args.catalog):
        raise LumosValueError("give --exposures and --catalog together (survey pairs and deblending stamps)")
    from lumos_ops.survey import use_survey

    pairs_from = (_exposure_paths(args.exposures), args.catalog) if args.exposures else None
    with use_survey(survey_from_args(args)):
        report = validate(args.model, args.test_set, args.out, config, pairs_from=pairs_from)
    print(json.dumps(report["summary"], indent=2))
    print(f"issue targets ({report['test_set_fluxes']} fluxes, bins in {report['binning']}):")
    print(format_targets(report["targets"]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``transfer`` and ``validate``."""
    p = subparsers.add_parser("train", help="train a LUMOS network on TEAHUPOO shards (or run a full recipe)",
                              description="Supervised training (paper §4.4) with a checkpoint every epoch.")
    p.add_argument("--training-set", help="TEAHUPOO directory (lumos simulate training-set)")
    p.add_argument("--recipe", help="simulate the data and train end to end: 'default' (the shipped model's, "
                   "'fast-mf-v12-nobg-ft', which trains 'fast-mf-v12' first) or 'fast-mf-noccd-v12-nobg-ft' (its "
                   "no-CCD companion); experiments: fast-mf-v15-ft, fast-mf-noccd-v15-ft, fast-mf-v14, fast-mf-v13-clear-ft, fast-mf-v12-mixed, "
                   "fast-mf-r-v13-mixed; earlier: fast-mf-v12, fast-v11, fast-noccd-v11, fast-v10, fast-noccd-v10")
    p.add_argument("--n-stamps", type=int, help="recipe only: override the number of training stamps")
    p.add_argument("--workers", type=int,
                   help="recipe only: processes simulating the survey and cutting its stamps (default 1; same files for any "
                        "number)")
    p.add_argument("--init-model", metavar="MODEL",
                   help="recipe only: start a fine-tuning recipe from this checkpoint (a file, default or fast-noccd) "
                        "instead of training the recipe it starts from")
    p.add_argument("--out", required=True, help="output directory (model.pt, train_state.pt, metrics.json)")
    p.add_argument("--arch", help="registered architecture: fast (default), fast-mf (anchored on the matched filter), "
                   "fast-mf-r (fast-mf with a width head that reads the model departure) or paper")
    p.add_argument("--epochs", type=int,
                   help="passes over the training stamps (default 10; a recipe: its own); with --resume, more than "
                        "the saved run's trains longer, as many does nothing")
    p.add_argument("--batch-size", type=int, help="stamps per step (default 500; a recipe: its own)")
    p.add_argument("--lr", type=float, help="initial Adam learning rate (paper 1e-4)")
    p.add_argument("--lr-step", type=int, help="epochs between learning-rate divisions (paper 40)")
    p.add_argument("--lr-gamma", type=float, help="factor applied every --lr-step epochs (paper 0.1)")
    p.add_argument("--seed", type=int, help="seed of the weights and the batch order (default 0; a recipe: its own)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="disable bfloat16 autocast on CUDA")
    p.add_argument("--ccd-shape", type=int, nargs=2, metavar=("ROWS", "COLS"),
                   help="CCD shape for position normalisation (default: read from the set's first exposure)")
    p.add_argument("--max-train", type=int, help="use at most N >= 1 training stamps (default: all)")
    p.add_argument("--max-val", type=int, help="use at most N >= 1 validation stamps (default: all)")
    p.add_argument("--threads", type=int, help="torch CPU threads, >= 1 (default: torch's)")
    p.add_argument("--drop-input", nargs="+", metavar="NAME",
                   help="scalar inputs to hide from the network: i_auto, ccd_x, ccd_y, background")
    p.add_argument("--frozen-bn-epochs", type=int, metavar="N",
                   help="train the last N epochs with BatchNorm running statistics frozen (eval mode), so the "
                        "shipped network is the one optimised (default 0; recipes fast-v10, fast-v11, fast-mf-v12: 3)")
    p.add_argument("--balanced-weights", action="store_true",
                   help="reference-prior sets: weight each stamp by g(matched-filter flux) / g(true flux), which keeps "
                        "the likelihood as the minimiser and gives faint stamps their share of the loss "
                        "(default: the importance weights 1 / g(true flux); docs/likelihood.md §15); refused on a "
                        "training set whose fluxes follow a population")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/train_state.pt, with the saved run's settings (only --epochs, --device, "
                        "--threads and -q may change)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--survey", metavar="FILE", default=None,
                   help="band order of the model's embedding when the training set records none (its survey.json): "
                        "the survey's model_bands x epochs (default: $LUMOS_SURVEY, else the 40 PAUS narrow bands x 2)")
    p.set_defaults(func=_cmd_train)

    t = subparsers.add_parser("transfer", help="unsupervised transfer learning on exposure pairs (eq. 12)",
                              description="Fine-tune the last layer on pairs of exposures of the same galaxy + simulations.")
    t.add_argument("--model", help=f"starting checkpoint: a file or {shipped_models_help()} (default: default)")
    t.add_argument("--exposures", required=True, help="directory (searched for *.fits) or glob of exposures")
    t.add_argument("--catalog", required=True, help="external catalogue (CSV or Parquet)")
    t.add_argument("--sim-set", required=True, help="TEAHUPOO directory for the supervised term")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--epochs", type=int, help="passes over the pairs (default 100)")
    t.add_argument("--batch-size", type=int, help="pairs and simulated stamps per step (default 500)")
    t.add_argument("--lr", type=float, help="paper 1e-5")
    t.add_argument("--lr-step", type=int, help="paper 50")
    t.add_argument("--max-pairs", type=int, help="paper 20000")
    t.add_argument("--max-sim", type=int, help="paper 20000")
    t.add_argument("--pair-weight", type=float, help="weight of eq. (11) (paper 1)")
    t.add_argument("--default-zero-point", type=float, help="ZP for exposures without a ZP header")
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_survey_option(t)
    t.set_defaults(func=_cmd_transfer)

    v = subparsers.add_parser("validate", help="validation report of a LUMOS model (JSON + PNG)",
                              description="Bias/sigma68 per i_auto bin vs baselines, PIT, coverage, D width.")
    v.add_argument("--model", help=f"checkpoint: a file or {shipped_models_help()} (default: default)")
    v.add_argument("--test-set", required=True, help="TEAHUPOO directory; stamps >= 93 px also feed the baselines")
    v.add_argument("--split", default="all", help="split of the set to use (default 'all': a held-out set)")
    v.add_argument("--max-stamps", type=int, help="use at most N stamps")
    v.add_argument("--min-stamps", type=int, default=10_000,
                   help="refuse fewer stamps (default 10000, the minimum accepted as evidence)")
    v.add_argument("--binning", default="i_auto", choices=("i_auto", "band_mag"),
                   help="magnitude of the targets' bins (default i_auto, as in the paper's Fig. 7; the report holds both)")
    v.add_argument("--estimator", default="median", choices=("median", "mean", "mode"),
                   help="PDF point estimate scored as LUMOS (default median: zero-median relative error per "
                        "i_auto bin for calibrated PDFs; the report holds all three)")
    v.add_argument("--no-ccd-model", help="checkpoint trained with --drop-input ccd_x ccd_y: PIT without CCD position")
    v.add_argument("--deblend-stamps", type=int, default=4000,
                   help="stamps of the i=22 target / i=20 neighbour test (needs --exposures; 0 = skip)")
    v.add_argument("--deblend-fluxes", nargs="+", default=["test_set", "catalog"], choices=("test_set", "catalog"),
                   help="band fluxes of the deblending targets, one test each, the first scored: test_set (drawn "
                        "as the test set's: a TEAHUPOO target, as in the paper) and/or catalog (own SED at i=22)")
    v.add_argument("--seed", type=int, default=5, help="seed of the deblending stamps")
    v.add_argument("--baselines", nargs="*", default=["aperture", "optimal"],
                   help="classical methods to compare with (aperture, optimal, modelfit)")
    v.add_argument("--exposures", help="survey exposures for the D-statistic and deblending tests (with --catalog)")
    v.add_argument("--catalog", help="catalogue of --exposures")
    v.add_argument("--batch-size", type=int, default=1024)
    v.add_argument("--device")
    v.add_argument("--out", required=True, help="output directory (validation.json, validation.png)")
    v.add_argument("-q", "--quiet", action="store_true")
    add_survey_option(v)
    v.set_defaults(func=_cmd_validate)
