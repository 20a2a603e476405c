"""Noiseless pairs of unlike galaxies: what a target keeps of its neighbour, against the neighbour's synthetic blend.

    .venv/bin/python reports/lumos/crosstalk/noiseless_pairs.py [--beta 2.5] > reports/lumos/crosstalk/noiseless_pairs.txt

A target of half-light radius ``rt`` and a neighbour of ``rn`` (arcsec; Sérsic index, axis ratio and
angle alike), 3, 5 or 8 px apart, the neighbour twice as bright, drawn noiselessly with a Moffat PSF of
``--beta`` (FWHM 0.9 arcsec, 0.263 arcsec pixels) and fitted jointly (:func:`fit_neighbours`) with the
measurement's Moffat of beta 3.5. Per pair, as fractions of the neighbour light ``c`` under the
target's filter:

- ``keeps``: the target's joint amplitude less its matched-filter reading alone (what the pair adds);
- ``κ``: the neighbour's synthetic blend at the pair's offset (:func:`leak_sums` on the neighbour
  alone, its own model as the zero-flux target): what the exposure's measurement assumes of it;
- ``self``: the target alone, fitted jointly with the neighbour's model: its own departure from its
  model, given back through the fit.

``keeps ≈ κ + self`` holds where the two galaxies are alike; the table shows where it does not.
"""

from __future__ import annotations

import argparse

import numpy as np

from lumos_ops.bench.synthetic import random_catalog
from lumos_ops.cutouts import cut_stamps
from lumos_ops.measure import render_target_models
from lumos_ops.photometry.crosstalk import leak_sums
from lumos_ops.photometry.neighbours import fit_neighbours

SIZE = 60
SHAPE = (200, 200)
SKY = 6.0
FWHM = 0.9
MODEL_BETA = 3.5


def frame(catalog, flux: np.ndarray, beta: float) -> np.ndarray:
    """Noiseless frame (e-/s per pixel) of ``catalog``'s galaxies of ``flux`` (e-/s) on a flat sky."""
    stamps = cut_stamps(np.zeros(SHAPE, dtype=np.float32), catalog["x"], catalog["y"], size=SIZE)
    light, _ = render_target_models(catalog, stamps.dx, stamps.dy, psf_fwhm=FWHM, psf_beta=beta, size=SIZE)
    image = np.full(SHAPE, SKY)
    for j, f in enumerate(flux):
        image[stamps.y0[j] : stamps.y0[j] + SIZE, stamps.x0[j] : stamps.x0[j] + SIZE] += f * light[j]
    return image.astype(np.float32)


def pair(rt: float, rn: float, separation: int, beta: float) -> dict[str, float]:
    catalog = random_catalog(2, shape=SHAPE, seed=3)
    catalog["x"], catalog["y"] = [80.3, 80.3 + separation], [90.6, 90.6]
    for column in ("sersic_n", "q", "pa"):
        catalog[column] = catalog[column].iloc[0]
    catalog["r50"] = [rt, rn]
    flux = np.array([100.0, 200.0])
    stamps = cut_stamps(np.zeros(SHAPE, dtype=np.float32), catalog["x"], catalog["y"], size=SIZE)
    models, _ = render_target_models(catalog, stamps.dx, stamps.dy, psf_fwhm=FWHM, psf_beta=MODEL_BETA, size=SIZE)

    def joint(amplitudes: np.ndarray):
        image = frame(catalog, amplitudes, beta)
        return fit_neighbours(image, cut_stamps(image, catalog["x"], catalog["y"], size=SIZE), models, correlation=False)

    fit = joint(flux)
    light = float(fit.contamination[0])
    alone = cut_stamps(frame(catalog.iloc[[0]], flux[:1], beta), catalog["x"][:1], catalog["y"][:1], size=SIZE)
    own = float((models[0] * (alone.data[0] - SKY)).sum() / (models[0] ** 2).sum())
    single = cut_stamps(frame(catalog.iloc[[1]], flux[1:], beta), catalog["x"][1:], catalog["y"][1:], size=SIZE)
    num, den = leak_sums(single.data, np.ones(single.data.shape, dtype=bool), models[1:], np.array([SKY]),
                         np.array([1e-8]), offsets=((-separation, 0),))
    self_term = float(joint(np.array([flux[0], 0.0])).amplitude[0]) - own
    return {"rt": rt, "rn": rn, "separation_px": separation, "c_over_neighbour_flux": light / flux[1],
            "keeps": (float(fit.amplitude[0]) - own) / light, "kappa": float(num[0] / den[0]), "self": self_term / light}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beta", type=float, default=2.5, help="Moffat beta the pairs are drawn with (default 2.5)")
    args = parser.parse_args()
    print(f"drawn with Moffat beta {args.beta}, measured with beta {MODEL_BETA}; % of c: keeps / κ / self (c over the neighbour's flux)")
    for rt in (0.3, 0.6, 1.0):
        for rn in (0.3, 0.6, 1.0):
            cells = []
            for separation in (3, 5, 8):
                r = pair(rt, rn, separation, args.beta)
                cells.append(f"{separation} px: {100 * r['keeps']:+6.2f} / {100 * r['kappa']:+6.2f} / {100 * r['self']:+5.2f}"
                             f" ({r['c_over_neighbour_flux']:.2f})")
            print(f"rt {rt:.1f}\" rn {rn:.1f}\"  " + " | ".join(cells))


if __name__ == "__main__":
    main()
