"""``lumos bench``: evidence reports (``lumos bench methods``: the classical photometry baselines)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run_bench_methods"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``bench`` sub-command and its ``methods`` report."""
    parser = subparsers.add_parser("bench", help="benchmarks and evidence reports")
    sub = parser.add_subparsers(dest="bench_command", metavar="REPORT", required=True)
    methods = sub.add_parser(
        "methods",
        help="bias and sigma68 of aperture / modelfit / optimal photometry on held-out simulations",
        description=(
            "Simulate a PAUCam-like survey and held-out TEAHUPOO stamps (96 px, for the 30-45 px "
            "background annulus), measure them with the classical methods and write OUT/methods.json "
            "and OUT/methods.png (bias and sigma68 of (f - f0) / f0 per i_auto bin, paper Fig. 7), "
            "plus the renderer benchmark."
        ),
    )
    methods.add_argument("--out", required=True, help="output directory")
    methods.add_argument("--n-stamps", type=int, default=10_000, help="held-out stamps (default 10000)")
    methods.add_argument("--stamp-size", type=int, default=96, help="stamp side in pixels (default 96)")
    methods.add_argument("--ccd-shape", type=int, nargs=2, default=(2048, 2048), metavar=("ROWS", "COLS"),
                         help="simulated CCD shape (default 2048 2048)")
    methods.add_argument("--bands", nargs="+", default=None, metavar="BAND",
                         help="narrow bands of the simulated survey (default NB455 NB615 NB685 NB845)")
    methods.add_argument("--n-epochs", type=int, choices=(1, 2), default=2, help="camera epochs simulated (default 2)")
    methods.add_argument("--methods", nargs="+", default=["aperture", "modelfit", "optimal"],
                         choices=["aperture", "modelfit", "optimal"], help="methods to compare")
    methods.add_argument("--stamps", default=None, help="measure this existing TEAHUPOO set instead of simulating one")
    methods.add_argument("--workdir", default=None, help="where to simulate (default OUT/sim)")
    methods.add_argument("--render-profiles", type=int, default=500, help="renderer benchmark size (0 skips it)")
    methods.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    methods.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    methods.set_defaults(func=run_bench_methods)


def run_bench_methods(args: argparse.Namespace) -> int:
    """Body of ``lumos bench methods``; prints the table and returns 0."""
    from lumos_ops.bench.methods import MethodsBenchConfig, run_methods_benchmark
    from lumos_ops.bench.methods_table import format_table

    bands = {"bands": tuple(args.bands)} if args.bands else {}
    config = MethodsBenchConfig(
        **bands,
        n_epochs=args.n_epochs,
        n_stamps=args.n_stamps,
        stamp_size=args.stamp_size,
        ccd_shape=tuple(args.ccd_shape),
        methods=tuple(args.methods),
        render_profiles=args.render_profiles,
        seed=args.seed,
    )
    report = run_methods_benchmark(config, args.out, workdir=args.workdir, stamps=args.stamps, progress=not args.quiet)
    print(format_table(report))
    print(f"lumos bench methods: wrote {args.out}/methods.json and {args.out}/methods.png", file=sys.stderr)
    return 0
