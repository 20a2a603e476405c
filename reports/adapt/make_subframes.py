"""Cut the SDSS g, r, i frames of ``shared/realdata`` into sub-frame exposures and a catalogue.

``lumos adapt`` splits its exposures into training and held-out sets by exposure. Three real frames
(one per band) are too few for that, so each frame is cut into ``--grid NY NX`` disjoint sub-frames
written as separate exposure files. Held-out sub-frames therefore share their original frame (its
sky, PSF, reprojection kernel and noise correlation), not pixels, with training sub-frames.

Headers are mapped as ``lumos inject`` maps a real frame (``lumos_ops.evaluation.injection``):

* ``FILTER``: the shipped model's trained narrow band nearest in wavelength (g 477 nm -> NB455,
  r 623 nm -> NB615, i 763 nm -> NB765);
* ``EXPTIME`` 90 s and ``GAIN`` (e- per nanomaggy) such that the frame's background pixel noise,
  measured on the whole frame without its sources, is the shipped model's training pixel noise
  (``Normalization.pixel_scale``, e-/s): the same gain for every sub-frame of a frame;
* ``PSFFWHM``: the frame's PSF FWHM measured on its stars (pixels) x the package pixel scale
  (0.263 arcsec), so that catalogue sizes in arcsec map to the same pixels;
* ``EXPNUM`` (frame x 100 + sub-frame), ``CCDNUM`` (sub-frame + 1), ``EPOCH`` 0, and the WCS with
  ``CRPIX`` shifted to the sub-frame.

The catalogue (``catalog.parquet``) lists the sources detected (sep, 5 sigma) on the r frame with
their sky position, circularised half-light radius (sep's flux_radius scaled so that the stars'
maps to the PSF's FWHM / 2, the PSF removed in quadrature, in arcsec at 0.263 arcsec/pixel, at
least 0.1 arcsec), axis ratio (of the PSF-removed second moments, at least 0.2), position angle, Sersic index 1 and ``i_auto`` from the i-frame
flux (AB, 22.5 - 2.5 log10 nanomaggies): the survey catalogue whose shape distribution TEAHUPOO and
the injection draw from.

``--survey-headers FILE`` instead keeps each frame's own SDSS header and pixel unit (nanomaggies)
for ``lumos adapt --survey FILE`` (e.g. ``examples/surveys/sdss-gri.json``), which maps the keywords.
It changes only what a survey file cannot: ``FILTER`` set from the file name (all three frames of
``shared/realdata`` carry ``FILTER = 'g'``, their headers copied from the g frame: the one header fix
a user makes), ``EXPNUM``/``CCDNUM`` per sub-frame and ``CRPIX`` shifted to the sub-frame. The
catalogue's sizes are then in arcsec at the survey file's pixel scale (``pixel_scale`` of FILE:
1.188 arcsec for ``sdss-gri-reprojected.json``, which describes these resampled frames; 0.396 for
``sdss-gri.json``, native SDSS frames), the scale at which ``lumos adapt --survey`` turns them back
into pixels, and ``i_auto`` is the AB magnitude of the i pixels' sum in FILE's units (gain, exposure
time and zero point of the i sub-frame as ``read_exposure`` reads them).

Usage::

    .venv/bin/python reports/adapt/make_subframes.py --realdata ../shared/realdata --out /tmp/adapt-sdss
    .venv/bin/python reports/adapt/make_subframes.py --realdata ../shared/realdata --out /tmp/adapt-sdss-reproj \\
        --survey-headers examples/surveys/sdss-gri-reprojected.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.evaluation.injection import estimate_psf_fwhm, frame_header, noise_autocovariance, read_frame
from lumos_ops.lumos.checkpoint import load_checkpoint

BANDS = {"g": ("NB455", 477.0), "r": ("NB615", 623.0), "i": ("NB765", 763.0)}
EXPTIME = 90.0


def _header(path: Path) -> fits.Header:
    with fits.open(path) as hdul:
        return hdul[0].header.copy()


def _catalogue(realdata: Path, fwhm_px: float, pixel_scale: float = PIXEL_SCALE, unit_mag: float = 22.5) -> pd.DataFrame:
    """The sep catalogue of the r frame (module notes); ``i_auto = unit_mag - 2.5 log10(sum of i pixels)``,
    ``unit_mag`` the AB magnitude of one pixel unit (22.5 for nanomaggies)."""
    import sep

    r = read_frame(realdata / "sdss_r.fits.bz2").astype(np.float64)
    i = read_frame(realdata / "sdss_i.fits.bz2").astype(np.float64)
    bkg = sep.Background(np.ascontiguousarray(r))
    objects = sep.extract(np.ascontiguousarray(r - bkg.back()), 5.0, err=bkg.globalrms, minarea=5)
    x, y = objects["x"], objects["y"]
    a, b, theta = objects["a"], objects["b"], objects["theta"]
    radius, _ = sep.flux_radius(np.ascontiguousarray(r - bkg.back()), x, y, 6.0 * a, 0.5, subpix=5)
    ibkg = sep.Background(np.ascontiguousarray(i))
    flux_i, _, _ = sep.sum_ellipse(np.ascontiguousarray(i - ibkg.back()), x, y, a, b, theta, 2.5, subpix=5)
    wcs = WCS(_header(realdata / "sdss_r.fits.bz2")).celestial
    ra, dec = wcs.pixel_to_world_values(x, y)
    # sep's flux_radius of the stars (10th percentile: the most compact sources) stands for the
    # PSF's half-light radius FWHM / 2: radii are scaled to that, the PSF removed in quadrature
    star = float(np.nanpercentile(radius, 10))
    r50 = np.sqrt(np.clip(radius**2 - star**2, 0.0, None)) * (0.5 * fwhm_px / star) * pixel_scale
    psf_var = (fwhm_px / 2.3548) ** 2
    major, minor = np.clip(a**2 - psf_var, 0.0, None), np.clip(b**2 - psf_var, 0.0, None)
    q = np.sqrt(minor / np.where(major > 0, major, 1.0))
    ok = np.isfinite(r50) & (flux_i > 0)
    return pd.DataFrame({
        "ref_id": np.arange(int(ok.sum()), dtype=np.int64),
        "ra": ra[ok], "dec": dec[ok],
        "r50": np.clip(r50[ok], 0.1, 3.0),
        "sersic_n": 1.0,
        "q": np.clip(np.where(major[ok] > 0, q[ok], 1.0), 0.2, 1.0),
        "pa": np.degrees(theta[ok]) % 180.0,
        "i_auto": unit_mag - 2.5 * np.log10(flux_i[ok]),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", default="../shared/realdata")
    parser.add_argument("--out", required=True)
    parser.add_argument("--grid", type=int, nargs=2, default=(2, 2), metavar=("NY", "NX"))
    parser.add_argument("--survey-headers", metavar="FILE", default=None,
                        help="keep the SDSS headers and nanomaggies for lumos adapt --survey FILE (FILTER from the "
                             "file name, EXPNUM/CCDNUM, CRPIX); catalogue sizes at FILE's pixel scale")
    args = parser.parse_args()
    realdata, out = Path(args.realdata), Path(args.out)
    (out / "exposures").mkdir(parents=True, exist_ok=True)
    if args.survey_headers:
        survey_subframes(realdata, out, tuple(args.grid), Path(args.survey_headers))
        return
    training_noise = float(load_checkpoint(None, device="cpu").normalization.pixel_scale)
    record = {"grid": list(args.grid), "frames": {}}
    fwhms = []
    for k, (sdss, (band, wavelength)) in enumerate(BANDS.items()):
        path = realdata / f"sdss_{sdss}.fits.bz2"
        data = read_frame(path)
        cov = noise_autocovariance(data)
        noise = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
        fwhm = estimate_psf_fwhm(data)
        fwhms.append(fwhm)
        mapped = frame_header(noise, training_noise=training_noise, noise_ratio=1.0, band=band, psf_fwhm_px=fwhm,
                              exptime=EXPTIME)
        original = _header(path)
        ny, nx = data.shape
        ys = np.linspace(0, ny, args.grid[0] + 1).astype(int)
        xs = np.linspace(0, nx, args.grid[1] + 1).astype(int)
        subs = []
        for a in range(args.grid[0]):
            for b in range(args.grid[1]):
                s = a * args.grid[1] + b
                header = original.copy()
                for key in ("CRPIX1", "CRPIX2"):
                    if key in header:
                        header[key] = float(header[key]) - (xs[b] if key == "CRPIX1" else ys[a])
                header.update({**mapped, "EXPNUM": (k + 1) * 100 + s, "CCDNUM": s + 1, "SDSSBAND": sdss,
                               "SUBFRAME": f"{ys[a]}:{ys[a + 1]},{xs[b]}:{xs[b + 1]}"})
                name = out / "exposures" / f"sdss_{sdss}_{a}{b}.fits"
                fits.PrimaryHDU(data[ys[a]:ys[a + 1], xs[b]:xs[b + 1]].astype(np.float32), header=header).writeto(
                    name, overwrite=True)
                subs.append(name.name)
        record["frames"][sdss] = {"band": band, "wavelength_nm": wavelength, "noise_nanomaggies": noise,
                                  "psf_fwhm_px": fwhm, "gain": mapped["GAIN"], "exptime": EXPTIME, "subframes": subs}
    catalog = _catalogue(realdata, float(np.median(fwhms)))
    catalog.to_parquet(out / "catalog.parquet", index=False)
    record["catalog_rows"] = int(len(catalog))
    (out / "subframes.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def survey_subframes(realdata: Path, out: Path, grid: tuple[int, int], survey_file: Path) -> dict:
    """Sub-frames keeping the SDSS headers and nanomaggies (FILTER, EXPNUM, CCDNUM, CRPIX set); the catalogue."""
    from lumos_ops.survey import load_survey

    survey = load_survey(survey_file)
    record = {"grid": list(grid), "survey": str(survey_file), "pixel_scale": survey.pixel_scale, "frames": {}}
    fwhms = []
    for k, sdss in enumerate(BANDS):
        path = realdata / f"sdss_{sdss}.fits.bz2"
        data = read_frame(path)
        fwhm = estimate_psf_fwhm(data)
        fwhms.append(fwhm)
        original = _header(path)
        ny, nx = data.shape
        ys = np.linspace(0, ny, grid[0] + 1).astype(int)
        xs = np.linspace(0, nx, grid[1] + 1).astype(int)
        subs = []
        for a in range(grid[0]):
            for b in range(grid[1]):
                s = a * grid[1] + b
                header = original.copy()
                for key in ("CRPIX1", "CRPIX2"):
                    if key in header:
                        header[key] = float(header[key]) - (xs[b] if key == "CRPIX1" else ys[a])
                header.update({"FILTER": sdss, "EXPNUM": (k + 1) * 100 + s, "CCDNUM": s + 1,
                               "SUBFRAME": f"{ys[a]}:{ys[a + 1]},{xs[b]}:{xs[b + 1]}"})
                name = out / "exposures" / f"sdss_{sdss}_{a}{b}.fits"
                fits.PrimaryHDU(data[ys[a]:ys[a + 1], xs[b]:xs[b + 1]].astype(np.float32), header=header).writeto(
                    name, overwrite=True)
                subs.append(name.name)
        record["frames"][sdss] = {"filter_in_header": str(original.get("FILTER", "")).strip(), "filter_written": sdss,
                                  "psf_fwhm_px_measured": fwhm, "subframes": subs}
    # i_auto through the survey file: one pixel unit is gain / exptime e-/s, of AB magnitude ZP - 2.5 log10 of that
    from lumos_ops.io.exposure import read_exposure

    first = read_exposure(out / "exposures" / record["frames"]["i"]["subframes"][0], survey=survey)
    unit_mag = float(first.zero_point) - 2.5 * np.log10(first.gain / first.exptime)
    record["i_auto_unit_mag"] = unit_mag
    catalog = _catalogue(realdata, float(np.median(fwhms)), survey.pixel_scale, unit_mag)
    catalog.to_parquet(out / "catalog.parquet", index=False)
    record["catalog_rows"] = int(len(catalog))
    (out / "subframes.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
