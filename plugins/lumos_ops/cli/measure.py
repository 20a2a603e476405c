"""``lumos measure``: forced photometry of a catalogue on one exposure, one row per target."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lumos_ops.cli._survey_option import add_survey_option, survey_from_args
from lumos_ops.exceptions import CatalogError, InputFileError, LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.lumos.weights import shipped_models_help

if TYPE_CHECKING:
    import numpy as np

__all__ = ["register", "run_measure"]

_METHOD_CHOICES: tuple[str, ...] = ("aperture", "modelfit", "optimal", "lumos")


def _flag_epilog() -> str:
    bits = ", ".join(f"{int(f)}={f.name}" for f in Flag if f.value and f.name)
    return (
        "output columns: ref_id, flux, flux_err (e-/s), flag, then x, y (pixels), band, method and "
        "method-specific columns (e.g. aperture_a/b in pixels, background in e-/s per pixel).\n"
        f"flag is a bit mask (lumos_ops.flags.Flag): {bits}. "
        "OFF_IMAGE rows have flux NaN; other flags keep the measurement and tell why it may be unreliable.\n"
        "Errors in the inputs (unreadable FITS, missing header keywords or catalogue columns, targets "
        "off the image with --strict, unknown output extension) print one line and exit with status 2."
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``measure`` sub-command."""
    parser = subparsers.add_parser(
        "measure",
        help="forced photometry of catalogue targets on one exposure",
        description=(
            "Measure every target of an external catalogue on one CCD exposure and write one row per target. "
            "The header is read through the survey's mapping (--survey; PAUS: FITS in ADU with EXPTIME, FILTER, "
            "PSFFWHM and optional GAIN, SATURATE, ZP)."
        ),
        epilog=_flag_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", help="exposure FITS file (one CCD)")
    parser.add_argument("catalog", help="external catalogue (.csv or .parquet) with ref_id, x/y or ra/dec, r50, sersic_n, q, pa, i_auto")
    parser.add_argument("--method", choices=_METHOD_CHOICES, default="aperture", help="photometry method (default: aperture)")
    parser.add_argument("--model", default=None, help=f"LUMOS checkpoint file or shipped name: {shipped_models_help()} (method lumos only)")
    parser.add_argument("--out", required=True, help="output table (.csv or .parquet); written atomically")
    parser.add_argument("--stamp-size", type=int, default=None, help="stamp side in pixels (default 60)")
    parser.add_argument("--strict", action="store_true", help="fail (exit 2) when any target lies off the image")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument("--no-neighbours", action="store_true",
                        help="measure each target on the image's own pixels, without fitting its catalogued "
                             "neighbours jointly and taking their light out (docs/neighbours.md)")
    parser.add_argument("--keep-gradient", action="store_true",
                        help="do not take the frame's large-scale sky gradient out before the local backgrounds "
                             "(docs/background.md; a flat frame is measured as it is either way)")
    parser.add_argument("--keep-other-sources", action="store_true",
                        help="let a target's weighted sums and LUMOS stamp read the pixels of other detected sources "
                             "too, and do not subtract their light beyond the detections (docs/background.md; by "
                             "default their pixels are left out, as the background leaves them out, and the frame's "
                             "profile of that light is subtracted from every cutout)")
    add_survey_option(parser)
    parser.set_defaults(func=run_measure)



def _off_image_message(args: argparse.Namespace, shape: tuple[int, int], ref_id: np.ndarray, off: np.ndarray) -> str:
    """Which catalogue rows (1-based) lie off the image, for the error or the warning."""
    import numpy as np

    row = int(np.flatnonzero(off)[0]) + 1
    return (f"{args.catalog}: row {row} (ref_id {int(ref_id[row - 1])}) and {int(off.sum()) - 1} other target(s) lie "
            f"off the image {args.image} ({shape[1]} x {shape[0]} pixels)")


def run_measure(args: argparse.Namespace) -> int:
    """Body of ``lumos measure`` (returns the exit status; errors propagate as ``LumosError``)."""
    import numpy as np

    from lumos_ops.constants import STAMP_SIZE
    from lumos_ops.io.catalog import read_catalog, target_pixels
    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.io.tables import OUTPUT_SUFFIXES, write_table
    from lumos_ops.measure import centres_on_image, measure_exposure

    out_suffix = Path(args.out).suffix.lower()
    if out_suffix not in OUTPUT_SUFFIXES:
        raise InputFileError(f"{args.out}: unknown output format {out_suffix or '(none)'!r}; use .csv or .parquet")
    if args.model is not None and args.method != "lumos":
        raise LumosValueError(f"--model {args.model}: only the lumos method takes a model (got --method {args.method})")
    out_dir = Path(args.out).parent
    if not out_dir.is_dir():
        raise InputFileError(f"{args.out}: the output directory {out_dir} does not exist; create it first")
    stamp_size = STAMP_SIZE if args.stamp_size is None else args.stamp_size
    catalog = read_catalog(args.catalog)  # the cheap checks first: the exposure may fit its PSF on its stars
    if len(catalog) == 0:
        raise CatalogError(f"{args.catalog}: the catalogue has no rows")
    exposure = read_exposure(args.image, survey=survey_from_args(args))
    if args.strict:  # before measuring anything (without --strict, only targets on the image are measured)
        x, y = target_pixels(catalog, exposure.wcs, source=exposure.path)
        off = ~centres_on_image(x, y, exposure.shape)
        if off.any():
            raise CatalogError(_off_image_message(args, exposure.shape, catalog["ref_id"].to_numpy(), off)
                               + "; check the catalogue positions or the image WCS")
    options = {"model": args.model} if args.model is not None else {}
    table = measure_exposure(
        exposure,
        catalog,
        methods=(args.method,),
        progress=not args.no_progress,
        stamp_size=stamp_size,
        neighbours=not args.no_neighbours,
        remove_gradient=not args.keep_gradient,
        mask_other_sources=not args.keep_other_sources,
        **options,
    )
    off = (table["flag"].to_numpy(np.int64) & int(Flag.OFF_IMAGE)) != 0
    if off.any():
        message = _off_image_message(args, exposure.shape, table["ref_id"].to_numpy(), off)
        if off.all():
            raise CatalogError(message + "; check the catalogue positions or the image WCS")
        print(f"lumos measure: warning: {message}; written with flag OFF_IMAGE and flux NaN", file=sys.stderr)
    leading = ["ref_id", "flux", "flux_err", "flag"]
    table = table[leading + [c for c in table.columns if c not in leading]]
    write_table(table, args.out)
    print(f"lumos measure: {len(table)} targets ({int((~off).sum())} on the image) -> {args.out}", file=sys.stderr)
    return 0
