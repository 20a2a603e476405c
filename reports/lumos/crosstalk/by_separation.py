"""The neighbour leak by separation: the calibrators' synthetic blends at each offset, and the injected pairs' by overlap.

    .venv/bin/python reports/lumos/crosstalk/by_separation.py REPORT_DIR OUT_JSON

Two measurements of one `lumos inject` report, side by side:

- **Calibrators, by offset.** The report's Sérsic galaxies injected again with its configuration and
  seeds and measured with the optimal sum alone (as ``splice_blended.py`` does). Each chunk's
  synthetic blends (:func:`lumos_ops.photometry.crosstalk.leak_sums`) are summed again for each pair
  of opposite offsets of :data:`~lumos_ops.photometry.crosstalk.OFFSETS_PX` alone (3.0, 4.5, 6.4 and
  8.0 px) and pooled per frame with :func:`~lumos_ops.photometry.crosstalk.fit_leak`; the median
  overlap ``ρ² = G_fj² / (G_ff G_jj)`` of each offset's two models is printed with it.
- **Injected pairs, by overlap.** The report's blended rows of the optimal sum with ``c >= 0.3 f``
  (``c`` their ``neighbour_light``, ``f`` the true flux), in quarters of ``neighbour_overlap``: the
  leak their noiseless reading keeps, ``(model_flux - k f) / c`` (``k`` the frame's aperture
  factor), and what the measured flux keeps after the correction, ``(flux - f) / c`` (true SNR >= 30);
  the noiseless leak also over ``c / √ρ²``, which is the neighbour's flux for a neighbour the size of
  its target (``c = a_n G_tn / G_tt``, ``ρ² = G_tn² / (G_tt G_nn)``).
"""

from __future__ import annotations

import collections
import json
import sys

import numpy as np
import pandas as pd
from calibrator_hook import calibrator_chunks
from splice_blended import report_settings

from lumos_ops.evaluation.injection import InjectionConfig, population_seed, run_injection
from lumos_ops.photometry import crosstalk


def calibrator_leaks(report_dir: str) -> dict[str, list[dict[str, float]]]:
    """Per frame of the report: the pooled leak of each offset pair alone (module docstring)."""
    config, common = report_settings(report_dir)
    sums: dict = collections.defaultdict(lambda: collections.defaultdict(lambda: ([], [], [])))

    def record(ctx, frame, rows, data, usable, sky, variance):
        from lumos_ops.photometry.noise_correlation import frame_noise_correlation

        models = ctx.models[rows]
        correlation = frame_noise_correlation(ctx.exposure.data)
        label = str(ctx.exposure.path).split(" (")[0]
        m = np.where(usable, models, 0.0).astype(np.float64)
        for i in range(0, len(crosstalk.OFFSETS_PX), 2):
            pair = crosstalk.OFFSETS_PX[i : i + 2]
            n, d = crosstalk.leak_sums(data, usable, models, sky, variance, offsets=pair, correlation=correlation,
                                       exptime=ctx.exposure.exptime)
            f = np.where(usable, crosstalk._shifted(np.asarray(models), *pair[0]), 0.0)
            overlap = (m * f).sum(axis=(1, 2)) ** 2 / ((m * m).sum(axis=(1, 2)) * (f * f).sum(axis=(1, 2)))
            into = sums[label][float(np.hypot(*pair[0]))]
            into[0].append(n)
            into[1].append(d)
            into[2].append(overlap)

    with calibrator_chunks(record):
        run_injection(config["frames"], InjectionConfig(population="sersic", seed=population_seed(config["seed"], "sersic"),
                                                        **common), methods=["optimal"], model=config["model"])
    out = {}
    for label, per in sums.items():
        out[label] = []
        for separation in sorted(per):
            n, d, overlap = (np.concatenate(x) for x in per[separation])
            leak = crosstalk.fit_leak(n, d, min_calibrators=30)
            out[label].append({"separation_px": separation, "overlap": float(np.median(overlap)), "kappa": leak.kappa,
                               "kappa_err": leak.kappa_err, "n": leak.n_calibrators})
    return out


def pair_leaks(report_dir: str) -> list[dict[str, float]]:
    """The report's blended pairs (optimal sum, ``c >= 0.3 f``) in quarters of their overlap (module docstring)."""
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    rows = table[(table["population"] == "blended") & (table["method"] == "optimal")]
    rows = rows[rows["neighbour_light"] >= 0.3 * rows["true_flux"]]
    factor = rows["aperture_correction"].fillna(1.0)
    kept = (rows["model_flux"] - factor * rows["true_flux"]) / rows["neighbour_light"]
    left = (rows["flux"] - rows["true_flux"]) / rows["neighbour_light"]
    overlap = rows["neighbour_overlap"]
    neighbour_flux = rows["neighbour_light"] / np.sqrt(overlap)
    edges = np.quantile(overlap, [0.0, 0.25, 0.5, 0.75, 1.0])
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        part = (overlap >= lo) & (overlap <= hi)
        bright = part & (rows["true_snr"] >= 30)
        out.append({"overlap_lo": float(lo), "overlap_hi": float(hi), "n": int(part.sum()),
                    "noiseless_kept": float(np.median(kept[part])),
                    "noiseless_kept_of_neighbour_flux": float(np.median((kept * rows["neighbour_light"] / neighbour_flux)[part])),
                    "left_after_correction": float(np.median(left[bright])),
                    "n_bright": int(bright.sum())})
    return out


def main(report_dir: str, out_json: str) -> None:
    result = {"report": report_dir, "calibrators": calibrator_leaks(report_dir), "pairs": pair_leaks(report_dir)}
    with open(out_json, "w") as handle:
        json.dump(result, handle, indent=1)
    print(report_dir)
    for label, rows in result["calibrators"].items():
        cells = " | ".join(f"{r['separation_px']:.1f} px (ρ² {r['overlap']:.2f}) {100 * r['kappa']:+.2f} ± {100 * r['kappa_err']:.2f}"
                           for r in rows)
        print(f"  calibrators {label.split('/')[-1]:24s} {cells}")
    cells = " | ".join(f"ρ² {r['overlap_lo']:.2f}-{r['overlap_hi']:.2f}: {100 * r['noiseless_kept']:+.2f} / "
                       f"{100 * r['left_after_correction']:+.2f} / {100 * r['noiseless_kept_of_neighbour_flux']:+.2f}"
                       for r in result["pairs"])
    print(f"  pairs (noiseless kept, % of c / left after the correction, % of c / noiseless kept, % of c / √ρ²) {cells}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
