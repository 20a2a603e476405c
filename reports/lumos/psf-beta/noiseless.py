"""The model's Moffat beta against Kolmogorov-drawn galaxies, noiselessly: model error, its spread, the leak.

    .venv/bin/python reports/lumos/psf-beta/noiseless.py reports/lumos/psf-beta/noiseless.json \
        > reports/lumos/psf-beta/noiseless.txt

GalSim Sérsic galaxies of the injections' shape distribution (``lumos_ops.evaluation.injection``,
seed 1), drawn with a Kolmogorov PSF of FWHM 2.2, 3.0 and 4.0 px and measured noiselessly through
the production catalogue model (``catalogue_model``: Sérsic through a Moffat of the same FWHM) for a
range of Moffat betas. Per beta:

- ``ratio``: the matched-filter reading of each isolated galaxy over its flux (median, spread over
  the galaxies): one factor per exposure, the aperture correction, takes out the median; the
  spread it cannot;
- ``residual``: the galaxies' residual power after that fit, ``Σ (u - a m)² / Σ u²``: what a
  least-squares fit of the model's beta on an exposure's bright galaxies would minimise;
- ``leak``: 30 pairs (3-8 px apart, the neighbour twice as bright), the target's joint-fit reading
  less its reading alone (:func:`noiseless_reading`), in % of its neighbour light ``c`` (median and
  16-84 %; FWHM 3.0 px).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from lumos_ops.evaluation.injection import _psf, _render, _sersic, catalogue_model, noiseless_reading

BETAS = (3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0)
FWHMS_PX = (2.2, 3.0, 4.0)


def isolated(fwhm: float, rng: np.random.Generator, n: int = 40) -> list[dict[str, float]]:
    psf = _psf("kolmogorov", fwhm)
    galaxies = [_sersic(rng) for _ in range(n)]
    light = [_render(g, psf, 0.0, 0.0) for g in galaxies]
    out = []
    for beta in BETAS:
        residual = total = 0.0
        ratios = []
        for galaxy, u in zip(galaxies, light, strict=True):
            m = catalogue_model(galaxy, fwhm_px=fwhm, beta=beta, dx=0.0, dy=0.0)
            a = float((m * u).sum() / (m * m).sum())
            residual += float(((u - a * m) ** 2).sum())
            total += float((u**2).sum())
            ratios.append(a)
        out.append({"beta": beta, "ratio_median": float(np.median(ratios)), "ratio_spread": float(np.std(ratios)),
                    "residual": residual / total})
    return out


def pairs(fwhm: float, rng: np.random.Generator, n: int = 30) -> list[dict[str, float]]:
    psf = _psf("kolmogorov", fwhm)
    drawn = [(_sersic(rng), _sersic(rng), rng.uniform(3.0, 8.0), rng.uniform(0.0, 2 * np.pi)) for _ in range(n)]
    out = []
    for beta in BETAS:
        leaks = []
        for target, neighbour, separation, angle in drawn:
            ox, oy = separation * np.cos(angle), separation * np.sin(angle)
            ut, un = _render(target, psf, 0.0, 0.0), _render(neighbour, psf, ox, oy)
            mt = catalogue_model(target, fwhm_px=fwhm, beta=beta, dx=0.0, dy=0.0)
            mn = catalogue_model(neighbour, fwhm_px=fwhm, beta=beta, dx=ox, dy=oy)
            alone = noiseless_reading([(ut, 1.0)], [mt])
            both = noiseless_reading([(ut, 1.0), (un, 2.0)], [mt, mn])
            light = 2.0 * float((mt * mn).sum() / (mt * mt).sum())
            leaks.append((both - alone) / light)
        out.append({"beta": beta, "leak_median": float(np.median(leaks)), "leak_16": float(np.percentile(leaks, 16)),
                    "leak_84": float(np.percentile(leaks, 84))})
    return out


def main(out_json: str) -> None:
    rng = np.random.default_rng(1)
    result = {"isolated": {str(f): isolated(f, rng) for f in FWHMS_PX}, "pairs_fwhm_3px": pairs(3.0, rng)}
    with open(out_json, "w") as handle:
        json.dump(result, handle, indent=1)
    for fwhm, rows in result["isolated"].items():
        print(f"Kolmogorov FWHM {fwhm} px, isolated: " + " | ".join(
            f"β {r['beta']}: {r['ratio_median']:.4f} ± {r['ratio_spread']:.4f}, residual {1e4 * r['residual']:.1f}e-4"
            for r in rows))
    print("pairs, FWHM 3.0 px, leak % of c: " + " | ".join(
        f"β {r['beta']}: {100 * r['leak_median']:+.2f} ({100 * r['leak_16']:+.2f} to {100 * r['leak_84']:+.2f})"
        for r in result["pairs_fwhm_3px"]))


if __name__ == "__main__":
    main(sys.argv[1])
