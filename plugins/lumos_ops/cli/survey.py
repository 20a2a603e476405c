"""``lumos survey init | show``: write and inspect survey description files; ``--survey`` for other commands.

Every command that reads exposures or interprets bands takes ``--survey FILE``
(:func:`lumos_ops.cli._survey_option.add_survey_option`); without it the survey is ``$LUMOS_SURVEY``, else the built-in PAUS
(:func:`lumos_ops.survey.resolve_survey`). The file format is in ``docs/surveys.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from lumos_ops.cli._survey_option import add_survey_option, survey_from_args
from lumos_ops.exceptions import InputFileError, LumosValueError

if TYPE_CHECKING:
    from lumos_ops.survey import Survey

__all__ = ["register", "add_survey_option", "survey_from_args", "parse_header_spec", "init_command", "show_command"]


def _floats(text: str | None, flag: str, n: int) -> list[float | None]:
    """``n`` numbers from ``"a,b,c"`` (or one number for every band); ``None`` values when absent."""
    if text is None:
        return [None] * n
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LumosValueError(f"{flag} {text}: give comma-separated numbers") from None
    if len(values) == 1 and n > 1:
        values = values * n
    if len(values) != n:
        raise LumosValueError(f"{flag} {text}: {len(values)} values for {n} bands; give one per band (or one for all)")
    return list(values)


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def parse_header_spec(text: str) -> dict[str, dict[str, Any]]:
    """``"band=FILTER,psf_fwhm=SEEING:1.4,gain=:850"`` -> the ``"header"`` object of a survey file.

    Each item is ``quantity=KEYWORD[:default]``; an empty keyword (``gain=:850``) means the value is
    always the default. Numbers become numbers.
    """
    header: dict[str, dict[str, Any]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        quantity, sep, spec = item.partition("=")
        if not sep or not quantity.strip():
            raise LumosValueError(f"--header {item!r}: write quantity=KEYWORD[:default], e.g. psf_fwhm=SEEING:1.4")
        keyword, _, default = spec.partition(":")
        entry: dict[str, Any] = {}
        if keyword.strip():
            entry["keyword"] = keyword.strip()
        if default.strip():
            entry["default"] = _value(default.strip())
        if not entry:
            raise LumosValueError(f"--header {item!r}: give a keyword, a default (:value) or both")
        header[quantity.strip()] = entry
    return header


def _init_values(args: argparse.Namespace) -> dict[str, Any]:
    from lumos_ops.constants import NB_BANDS, band_centre_nm

    if not args.bands:
        raise LumosValueError("give --bands (e.g. --bands g,r,i) or --preset paus")
    names = [b.strip() for b in args.bands.split(",") if b.strip()]
    wavelengths = _floats(args.wavelengths, "--wavelengths", len(names))
    for i, (name, wl) in enumerate(zip(names, wavelengths, strict=True)):
        if wl is None:
            if name not in NB_BANDS:
                raise LumosValueError(f"--wavelengths: band {name} needs its central wavelength (nm)")
            wavelengths[i] = band_centre_nm(name)
    zero_points = _floats(args.zero_points, "--zero-points", len(names))
    exptimes = _floats(args.exptime, "--exptime", len(names))
    bands = []
    for name, wl, zp, t in zip(names, wavelengths, zero_points, exptimes, strict=True):
        band: dict[str, Any] = {"name": name, "wavelength_nm": wl}
        if zp is not None:
            band["zero_point"] = zp
        if t is not None:
            band["exptime"] = t
        bands.append(band)
    values: dict[str, Any] = {"name": args.name, "bands": bands, "n_epochs": args.epochs, "n_ccds": args.n_ccds,
                              "psf_fwhm_unit": args.psf_fwhm_unit}
    if args.pixel_scale is not None:
        values["pixel_scale"] = args.pixel_scale
    if args.ccd_shape is not None:
        ny, sep, nx = args.ccd_shape.lower().partition("x")
        if not sep or not (ny.strip().isdigit() and nx.strip().isdigit()):
            raise LumosValueError(f"--ccd-shape {args.ccd_shape}: write NYxNX in pixels, e.g. 1489x2048")
        values["ccd_shape"] = [int(ny), int(nx)]
    if args.header:
        values["header"] = parse_header_spec(args.header)
    for quantity, wanted in (("psf_fwhm", args.psf_from_stars), ("psf_beta", args.psf_beta_from_stars)):
        if wanted:
            values.setdefault("header", {}).setdefault(quantity, {})["from_stars"] = True
    if args.model_bands:
        values["model_bands"] = [b.strip() for b in args.model_bands.split(",") if b.strip()]
    if args.flux_error_floor is not None:
        values["flux_error_floor"] = args.flux_error_floor
    if args.neighbour_error_floor is not None:
        values["neighbour_error_floor"] = args.neighbour_error_floor
    if args.psf_flux_correction:
        values["psf_flux_correction"] = True
    if args.no_aperture_correction:
        values["aperture_correction"] = False
    if args.coadd_outlier_fraction is not None:
        values["coadd_outlier_fraction"] = args.coadd_outlier_fraction
    return values


def init_command(args: argparse.Namespace) -> int:
    """Body of ``lumos survey init``: validate and write the survey file atomically."""
    from pathlib import Path

    from lumos_ops.io.atomic import write_text_atomic
    from lumos_ops.survey import Survey, paus_survey

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputFileError(f"{out}: exists; give --force to replace it")
    if args.preset == "paus":
        survey = paus_survey()
    else:
        if args.pixel_scale is None:
            raise LumosValueError("give --pixel-scale (arcsec / pixel) or --preset paus")
        survey = Survey.from_dict(_init_values(args), source=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(survey.to_dict(), indent=2) + "\n")
    print(f"lumos survey: {survey.name}: {len(survey.bands)} bands ({', '.join(survey.band_names)}), "
          f"{survey.n_epochs} epoch(s), {survey.pixel_scale} arcsec/px -> {out}", file=sys.stderr)
    return 0


def show_command(args: argparse.Namespace) -> int:
    """Body of ``lumos survey show``: the selected survey as JSON on stdout, its source on stderr."""
    survey = survey_from_args(args)
    print(f"lumos survey: {survey.name} from {survey.source}", file=sys.stderr)
    print(json.dumps(survey.to_dict(), indent=2))
    return 0


def psf_fit_beta(survey: Survey, *, beta: float | None, fit_beta: bool) -> float | None:
    """The Moffat beta ``lumos survey psf`` fits the stars with (None: beta fitted too): ``--fit-beta``
    fits it; else ``--beta``; else what the survey's exposures get where the header has no beta
    (``psf_beta`` and ``psf_fwhm`` ``from_stars``: fitted, as ``lumos measure`` does; else the
    survey's default beta, else the models' 3.5)."""
    from lumos_ops.render import DEFAULT_MOFFAT_BETA

    if fit_beta:
        return None
    if beta is not None:
        return beta
    key = survey.header.get("psf_beta")
    fwhm = survey.header.get("psf_fwhm")
    if key is not None and key.from_stars and fwhm is not None and fwhm.from_stars:  # one fit, as read_exposure
        return None
    return float(key.default) if key is not None and key.default is not None else DEFAULT_MOFFAT_BETA


def psf_command(args: argparse.Namespace) -> int:
    """Body of ``lumos survey psf``: the PSF each frame's stars give, one line per frame on stdout."""
    import numpy as np

    from lumos_ops.evaluation.injection import read_frame
    from lumos_ops.photometry.psf_stars import measure_psf_fwhm

    survey = survey_from_args(args)
    beta = psf_fit_beta(survey, beta=args.beta, fit_beta=args.fit_beta)
    print("frame\tfwhm_px\tfwhm_arcsec\tbeta\tstars\tspread")
    fwhms = []
    for frame in args.frames:
        psf = measure_psf_fwhm(read_frame(frame), beta=beta, label=str(frame))
        fwhms.append(psf.fwhm_px)
        print(f"{frame}\t{psf.fwhm_px:.3f}\t{psf.fwhm_px * survey.pixel_scale:.3f}\t{psf.beta:.2f}\t{psf.n_stars}\t"
              f"{psf.spread:.3f}")
    print(f"lumos survey psf: median FWHM {np.median(fwhms):.3f} px = {np.median(fwhms) * survey.pixel_scale:.3f} "
          f"arcsec at {survey.pixel_scale} arcsec/px ({survey.name}); a survey file measures it per exposure with "
          '"psf_fwhm": {"from_stars": true}', file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``lumos survey init``, ``lumos survey show`` and ``lumos survey psf``."""
    from lumos_ops.constants import DEFAULT_FLUX_ERROR_FLOOR, DEFAULT_NEIGHBOUR_ERROR_FLOOR
    from lumos_ops.survey import HEADER_QUANTITIES

    quantities = "; ".join(f"{q}: {meaning}" for q, meaning in HEADER_QUANTITIES.items())
    parser = subparsers.add_parser(
        "survey", help="write or show a survey description file (bands, epochs, CCDs, header mapping)",
        description="A survey file selects what the code accepts: bands with wavelengths and zero points, camera "
                    "epochs, CCD geometry, pixel scale, exposure-time defaults and the header keyword of every "
                    "quantity. Select one with --survey FILE on any command or LUMOS_SURVEY in the pipeline "
                    "(docs/surveys.md).",
    )
    sub = parser.add_subparsers(dest="survey_command", metavar="SUBCOMMAND", required=True)
    init = sub.add_parser(
        "init", help="write a survey file from flags (or the built-in PAUS with --preset paus)",
        description="Write a survey file. Header quantities (--header quantity=KEYWORD[:default],...): "
                    f"{quantities}. Unmapped quantities keep the PAUS keywords (FILTER, EXPTIME, PSFFWHM, GAIN, "
                    "PSFBETA, EPOCH, ZP, SATURATE, EXPNUM, CCDNUM, MJD-OBS).",
        epilog="example: lumos survey init --out sdss.json --name sdss-gri --bands g,r,i --wavelengths 477,623,763 "
               "--zero-points 25.49 --exptime 53.907456 --pixel-scale 0.396 --ccd-shape 1489x2048 "
               "--header psf_fwhm=:1.4,gain=:850,ccdnum=CAMCOL",
    )
    init.add_argument("--out", required=True, help="survey file to write (JSON); atomically")
    init.add_argument("--preset", choices=("paus",), help="write a built-in survey (other flags are ignored)")
    init.add_argument("--name", default="survey", help="short survey name (default: survey)")
    init.add_argument("--bands", help="comma-separated band names as written in the headers, e.g. g,r,i")
    init.add_argument("--wavelengths", help="central wavelengths (nm), one per band, e.g. 477,623,763 "
                                            "(PAUS NBxxx bands: optional)")
    init.add_argument("--zero-points", help="AB zero points of 1 e-/s, one per band or one for all (used when the "
                                            "header has none)")
    init.add_argument("--exptime", help="default exposure time(s) (s), one per band or one for all")
    init.add_argument("--pixel-scale", type=float, help="pixel scale (arcsec / pixel)")
    init.add_argument("--epochs", type=int, default=1, help="camera epochs (default 1)")
    init.add_argument("--ccd-shape", help="CCD shape NYxNX in pixels (default 4096x2048)")
    init.add_argument("--n-ccds", type=int, default=1, help="CCDs per exposure (default 1)")
    init.add_argument("--psf-fwhm-unit", choices=("arcsec", "pixel"), default="arcsec",
                      help="unit of the header PSF FWHM (default arcsec)")
    init.add_argument("--header", help="quantity=KEYWORD[:default],... e.g. psf_fwhm=SEEING:1.4,gain=:850")
    init.add_argument("--psf-from-stars", action="store_true",
                      help="measure the PSF FWHM on each exposure's own stars where the header has no psf_fwhm "
                           "keyword (a Moffat of the PSF beta fitted to its bright isolated stars; without "
                           "--header psf_fwhm=KEYWORD, always)")
    init.add_argument("--psf-beta-from-stars", action="store_true",
                      help="fit the PSF's Moffat beta on each exposure's stars too where the header has no "
                           "psf_beta keyword, whenever the FWHM comes from the stars (one fit measures both)")
    init.add_argument("--model-bands", help="bands a new LUMOS model embeds, in row order (default: all bands)")
    init.add_argument("--flux-error-floor", type=float,
                      help="fraction of the flux added in quadrature to every per-exposure error: the error of the "
                           f"PSF and catalogue models (default {DEFAULT_FLUX_ERROR_FLOOR:g}; measure it with `lumos "
                           "inject`, 0 turns it off)")
    init.add_argument("--neighbour-error-floor", type=float,
                      help="fraction of the fitted neighbours' light under a blended target added in quadrature to "
                           f"its error (default {DEFAULT_NEIGHBOUR_ERROR_FLOOR:g}; measure it with `lumos inject`, "
                           "0 turns it off)")
    init.add_argument("--psf-flux-correction", action="store_true",
                      help="correct every method's fluxes on each exposure for its PSF model's error, measured with "
                           "galaxies drawn with the exposure's own stars' PSF (exposures with >= 10 bright stars)")
    init.add_argument("--no-aperture-correction", action="store_true",
                      help="do not put every method's fluxes on each exposure on the scale of its bright isolated "
                           "targets' large apertures (on by default, where >= 30 targets reach SNR 40; "
                           "docs/likelihood.md §16)")
    init.add_argument("--coadd-outlier-fraction", type=float,
                      help="prior probability of a bad exposure (cosmic ray, satellite trail, unflagged artefact) "
                           "in the LUMOS co-adds (default 0: off; docs/likelihood.md §3)")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=init_command)
    show = sub.add_parser("show", help="print the selected survey (--survey, else $LUMOS_SURVEY, else PAUS) as JSON")
    add_survey_option(show)
    show.set_defaults(func=show_command)
    psf = sub.add_parser(
        "psf", help="the PSF FWHM (and beta) that each frame's own stars give (photometry.psf_stars)",
        description="Fit a pixel-integrated Moffat to each frame's bright isolated stars and print the stellar "
                    "locus's FWHM (pixels, and arcsec at the survey's pixel scale), beta, the number of stars and "
                    "their spread: what a survey file's \"from_stars\" measures per exposure (docs/surveys.md).",
    )
    psf.add_argument("frames", nargs="+", help="FITS frames (.fits, .fits.bz2, .fits.gz, .fits.fz)")
    psf.add_argument("--beta", type=float, default=None,
                     help="Moffat beta of the fits (default: as the survey file's exposures get it: fitted where its "
                          "psf_beta is from_stars, else its default beta, else 3.5, the models')")
    psf.add_argument("--fit-beta", action="store_true", help="fit beta star by star too (the locus median)")
    add_survey_option(psf)
    psf.set_defaults(func=psf_command)
