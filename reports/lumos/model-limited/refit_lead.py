"""How much of the catalogue-model error a refit of the Sérsic model would remove, noiselessly.

For 60 bulge + disk + knots galaxies (``injection.draw_galaxies("knots")``, seed 21) convolved with a
Moffat or a Kolmogorov PSF of FWHM 3.5 px, and 60 Sérsic galaxies with the Kolmogorov PSF, the background-limited matched filter reads
``sum(m u) / sum(m m)`` of the true flux with three models ``m`` (Sérsic ⊗ the measurement's Moffat):
the catalogue's (its ``r50`` and ``n``), the least-squares best size at the catalogue's ``n``, and the
least-squares best size and ``n`` (``n`` in 0.5-6). Least squares with a free flux maximises
``(sum m u)^2 / sum m m``. No noise: this bounds what a refit could gain where the model error
exceeds the noise (true SNR >= 20 or so), not what it costs in variance below.

Usage::

    .venv/bin/python reports/lumos/model-limited/refit_lead.py reports/lumos/model-limited/refit_lead.json
"""

import json
import sys

import numpy as np
from scipy.optimize import minimize

from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.evaluation import injection
from lumos_ops.render import DEFAULT_MOFFAT_BETA, render_galaxies

FWHM_PX = 3.5


def model(galaxy, scale: float = 1.0, n: float | None = None) -> np.ndarray:
    """Unit-flux Sérsic ⊗ Moffat of the galaxy's catalogue row, size times ``scale``, index ``n``."""
    return render_galaxies(r50=galaxy.r50_arcsec * scale, sersic_n=galaxy.sersic_n if n is None else n, q=galaxy.q,
                           pa=galaxy.pa, psf_fwhm=FWHM_PX * PIXEL_SCALE, psf_beta=DEFAULT_MOFFAT_BETA,
                           size=65).images[0].astype(np.float64)


def reading(u: np.ndarray, m: np.ndarray) -> float:
    return float((m * u).sum() / (m * m).sum())


def best(u: np.ndarray, make, start: list[float]) -> float:
    """The reading of the least-squares model among ``make(params)``."""
    def loss(p):
        m = make(p)
        return -float((m * u).sum()) ** 2 / float((m * m).sum())

    fit = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-12})
    return reading(u, make(fit.x))


def main(path: str) -> None:
    out = {}
    for population, name in (("knots", "moffat"), ("knots", "kolmogorov"), ("sersic", "kolmogorov")):
        galaxies = injection.draw_galaxies(population, 60, np.random.default_rng(21))
        psf = injection._psf(name, FWHM_PX)
        rows = {"catalogue": [], "free_size": [], "free_size_and_n": []}
        for g in galaxies:
            u = injection._render(g, psf, 0.0, 0.0)
            rows["catalogue"].append(reading(u, model(g)))
            rows["free_size"].append(best(u, lambda p, g=g: model(g, np.exp(p[0])), [0.0]))
            rows["free_size_and_n"].append(best(
                u, lambda p, g=g: model(g, np.exp(p[0]), float(np.clip(p[1], 0.5, 6.0))), [0.0, g.sersic_n]))
        key = f"{population}/{name}"
        out[key] = {k: {"median": float(np.median(np.asarray(v) - 1.0)),
                        "sigma68": float((np.percentile(v, 84) - np.percentile(v, 16)) / 2.0)}
                    for k, v in rows.items()}
        print(key, " ".join(f"{k} {v['median']:+.3f} ± {v['sigma68']:.3f}" for k, v in out[key].items()))
    with open(path, "w") as handle:
        json.dump({"fwhm_px": FWHM_PX, "n_galaxies": 60, "seed": 21, "reading_minus_one": out}, handle, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
