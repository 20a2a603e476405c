"""Is a ``lumos adapt`` candidate's low bias on injected galaxies a matter of where they are placed?

Sérsic galaxies rendered as TEAHUPOO renders them (GalSim Sérsic x Moffat, beta 3.5, the exposure's
PSF FWHM; shapes from the catalogue), with Poisson noise, are added to the held-out exposures at
jittered grid positions *without* the injection's clearance from the frame's own sources, and measured
through ``measure_exposure`` (LUMOS candidate and optimal, blank-sky calibration on). The bias (median
of (f - f0) / f0 and of (f - f0) / err_optimal) is reported by f0 / err_optimal, split by the position's
distance to the frame's 3-sigma source mask (>= 6 px: where the injection places galaxies).

Usage::

    .venv/bin/python reports/adapt/check_positions.py RUN SURVEY.json CATALOG.parquet OUT.json [N_REALISATIONS [SPACING]]

``SPACING`` (pixels, default 24 as the injection): the grid on which the galaxies are placed; below the
stamp's half-side (30 px) every LUMOS stamp also holds other placed galaxies.
"""

import dataclasses
import json
import sys
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
from scipy import ndimage

from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import measure_exposure
from lumos_ops.noise_calibration import source_mask
from lumos_ops.survey import load_survey, use_survey

run, survey_file, catalog_file, out_json = sys.argv[1:5]
n_real = int(sys.argv[5]) if len(sys.argv) > 5 else 2
spacing = int(sys.argv[6]) if len(sys.argv) > 6 else 24
survey = load_survey(survey_file)
split = json.loads(Path(run, "split.json").read_text())
shapes = pd.read_parquet(catalog_file)
rng = np.random.default_rng(7)
half = 20
rows = []
with use_survey(survey):
    for path in split["heldout"]:
        exposure = read_exposure(path)
        base = np.asarray(exposure.data, dtype=np.float64)
        clearance = ndimage.distance_transform_edt(~source_mask(base))
        fwhm_px = exposure.psf_fwhm / exposure.pixel_scale
        psf = galsim.Moffat(beta=3.5, fwhm=fwhm_px)
        ny, nx = base.shape
        for r in range(n_real):
            ys, xs = np.arange(12, ny - 12, spacing), np.arange(12, nx - 12, spacing)
            ys, xs = ys + int(rng.integers(0, spacing // 2)), xs + int(rng.integers(0, spacing // 2))
            pts = np.array([(x, y) for y in ys for x in xs], dtype=np.float64)
            pts += rng.uniform(-spacing / 4, spacing / 4, pts.shape)
            pts = pts[(pts[:, 0] > 12) & (pts[:, 0] < nx - 12) & (pts[:, 1] > 12) & (pts[:, 1] < ny - 12)]
            image = base.copy()
            cat = []
            for k, (x, y) in enumerate(pts):
                row = shapes.iloc[int(rng.integers(0, len(shapes)))]
                r50, q, pa = float(np.clip(row["r50"], 0.1, 3.0)), float(np.clip(row["q"], 0.2, 1.0)), float(rng.uniform(0, 180))
                gal = galsim.Sersic(n=1.0, half_light_radius=r50 / exposure.pixel_scale).shear(q=q, beta=pa * galsim.degrees)
                dx, dy = x - round(x), y - round(y)
                unit = galsim.Convolve([gal, psf]).drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=1.0, offset=(dx, dy)).array
                flux = float(np.exp(rng.uniform(np.log(5.0), np.log(3000.0))))
                x0, y0 = int(round(x)) - half, int(round(y)) - half
                sl = (slice(max(y0, 0), min(y0 + 2 * half + 1, ny)), slice(max(x0, 0), min(x0 + 2 * half + 1, nx)))
                sub = unit[sl[0].start - y0 : sl[0].stop - y0, sl[1].start - x0 : sl[1].stop - x0]
                image[sl] += rng.poisson(np.clip(sub * flux * exposure.exptime, 0, None)) / exposure.exptime
                cat.append({"ref_id": k, "x": x, "y": y, "r50": r50, "sersic_n": 1.0, "q": q, "pa": pa, "i_auto": 20.0,
                            "true_flux": flux, "clearance": float(clearance[int(round(y)), int(round(x))])})
            catalog = pd.DataFrame(cat)
            measured = measure_exposure(dataclasses.replace(exposure, data=image.astype(np.float32)),
                                        catalog.drop(columns=["true_flux", "clearance"]), methods=["optimal", "lumos"],
                                        model=str(Path(run, "model.pt")))
            wide = measured.pivot_table(index="ref_id", columns="method", values=["flux", "flux_err"])
            wide.columns = [f"{a}_{b}" for a, b in wide.columns]
            rows.append(catalog.merge(wide.reset_index(), on="ref_id").assign(frame=Path(path).name, realisation=r))
t = pd.concat(rows, ignore_index=True)
t["snr"] = t["true_flux"] / t["flux_err_optimal"]
t["clear"] = t["clearance"] >= 6
t["bin"] = pd.cut(t["snr"], [0, 2, 5, 10, 20, 50, 1e5])
out = {}
for method in ("lumos", "optimal"):
    g = t.groupby(["clear", "bin"], observed=True).apply(lambda d, m=method: pd.Series({
        "n": len(d), "bias_rel": np.median((d[f"flux_{m}"] - d.true_flux) / d.true_flux),
        "bias_sig": np.median((d[f"flux_{m}"] - d.true_flux) / d.flux_err_optimal)}))
    print(method)
    print(g.round(3).to_string())
    out[method] = [{"clear": bool(k[0]), "snr_bin": str(k[1]), **{c: float(v) for c, v in row.items()}} for k, row in g.iterrows()]
Path(out_json).write_text(json.dumps({"spacing": spacing, "n_placements": len(t), "clear_fraction": float(t["clear"].mean()),
                                      **out}, indent=1))
