"""The refit of ``refit_lead.py`` with noise: flux bias and scatter per true SNR, catalogue model against
a least-squares Sérsic (size and index free), for knotty galaxies.

Each of 60 bulge + disk + knots galaxies (seed 21, FWHM 3.5 px) is drawn at true SNR 10, 20, 50, 100
and 200 (``f0 = SNR / sqrt(sum u^2)`` for unit white pixel noise, background-limited) with 4 noise
realisations. Estimates: the matched filter of the catalogue model, and the flux of the least-squares
Sérsic with free size and ``n`` (0.5-6), started from the catalogue's. Per SNR: median and sigma68
of ``f / f0 - 1``, and sigma68 of ``(f - f0)`` over the catalogue filter's noise error.

Usage::

    .venv/bin/python reports/lumos/model-limited/refit_noise.py reports/lumos/model-limited/refit_noise.json
"""

import json
import sys

import numpy as np
from refit_lead import FWHM_PX, best, model, reading

from lumos_ops.evaluation import injection

SNRS = (10.0, 20.0, 50.0, 100.0, 200.0)


def main(path: str) -> None:
    galaxies = injection.draw_galaxies("knots", 60, np.random.default_rng(21))
    rng = np.random.default_rng(22)
    out = {}
    for name in ("kolmogorov", "moffat"):
        psf = injection._psf(name, FWHM_PX)
        rel = {s: {"catalogue": [], "refit": []} for s in SNRS}
        for g in galaxies:
            u = injection._render(g, psf, 0.0, 0.0)
            m = model(g)
            noise_err = 1.0 / np.sqrt((m * m).sum())  # the catalogue filter's error for unit pixel noise
            for snr in SNRS:
                f0 = snr / np.sqrt((u * u).sum())
                for _ in range(4):
                    d = f0 * u + rng.normal(0.0, 1.0, u.shape)
                    rel[snr]["catalogue"].append((reading(d, m) - f0, f0, noise_err))
                    rel[snr]["refit"].append((best(d, lambda p, g=g: model(g, np.exp(p[0]), float(np.clip(p[1], 0.5, 6.0))),
                                                   [0.0, g.sersic_n]) - f0, f0, noise_err))
        out[name] = {}
        for snr in SNRS:
            row = {}
            for key, values in rel[snr].items():
                diff, f0, err = (np.asarray(x) for x in zip(*values))
                r = diff / f0
                row[key] = {"bias": float(np.median(r)), "sigma68": float((np.percentile(r, 84) - np.percentile(r, 16)) / 2),
                            "pull_sigma68_vs_noise": float((np.percentile(diff / err, 84) - np.percentile(diff / err, 16)) / 2)}
            out[name][str(int(snr))] = row
            print(name, int(snr), " ".join(f"{k}: bias {v['bias']:+.3f} s68 {v['sigma68']:.3f} pull {v['pull_sigma68_vs_noise']:.2f}"
                                           for k, v in row.items()), flush=True)
    with open(path, "w") as handle:
        json.dump({"fwhm_px": FWHM_PX, "n_galaxies": len(galaxies), "realisations": 4, "by_snr": out}, handle, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
