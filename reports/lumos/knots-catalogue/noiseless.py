"""What the catalogue's r50 convention does to the flux of knotty galaxies, without noise.

Usage: .venv/bin/python reports/lumos/knots-catalogue/noiseless.py OUT.json [N_GALAXIES]

Draws ``N_GALAXIES`` (default 300) galaxies of ``lumos inject``'s ``knots`` population (bulge + disk
+ star-forming knots, :func:`lumos_ops.evaluation.injection.draw_galaxies`) and catalogues each two
ways, the same Sersic index and axis ratio in both:

- ``circularised``: ``r50`` the half-light radius of the galaxy before its area-preserving shear,
  what the catalogue contract and the renderer mean (:func:`~lumos_ops.evaluation.injection.circularised_half_light_radius`);
- ``circle``: the radius of the circle about the centre that holds half the light of the sheared
  galaxy (GalSim's ``calculateHLR`` on a 1 px grid through a 0.3 px Gaussian), which is larger for
  elongated galaxies.

For each, the noiseless reading of the production estimate (the optimal weighted sum's weights,
background-limited; :func:`~lumos_ops.evaluation.injection.noiseless_reading`) over the true flux,
with the galaxy convolved by a Kolmogorov and by the measurement's Moffat PSF of FWHM 3 px, binned
by axis ratio q. A control: ``N_GALAXIES`` exponential disks (no bulge, no knots; n = 1 is their
true index) catalogued with the circularised radius, read the same way: what is left once the
radius is right and the profile is a Sersic one. Prints a table and writes the numbers to OUT.json.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.evaluation import injection
from lumos_ops.render import DEFAULT_MOFFAT_BETA

FWHM_PX = 3.0
Q_BINS = ((0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01))


def circle_radius(galaxy: injection.Galaxy) -> float:
    """The radius (arcsec) of the circle that holds half the light of the sheared galaxy."""
    import galsim

    image = galsim.Convolve([galaxy.profile, galsim.Gaussian(sigma=0.3)]).drawImage(
        nx=128, ny=128, scale=1.0, method="no_pixel")
    return float(image.calculateHLR()) * PIXEL_SCALE


def reading(galaxy: injection.Galaxy, psf) -> float:
    """Noiseless reading over the true flux of a galaxy read through its catalogue model."""
    model = injection.catalogue_model(galaxy, fwhm_px=FWHM_PX, beta=DEFAULT_MOFFAT_BETA, dx=0.0, dy=0.0)
    return injection.noiseless_reading([(injection._render(galaxy, psf, 0.0, 0.0), 1.0)], [model])


def summary(values: np.ndarray) -> dict[str, float]:
    p16, p50, p84 = np.percentile(values, [16, 50, 84])
    return {"median": float(p50), "p16": float(p16), "p84": float(p84)}


def disks(n: int, rng: np.random.Generator) -> list[injection.Galaxy]:
    """``n`` exponential disks sized and shaped as the knots' disks, catalogued with their circularised radius."""
    import galsim

    out = []
    for _ in range(n):
        r_disk = float(np.exp(rng.uniform(np.log(0.4), np.log(1.5)))) / PIXEL_SCALE
        q, pa = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.0, 180.0))
        round_disk = galsim.Exponential(half_light_radius=r_disk)
        r50 = injection.circularised_half_light_radius(round_disk, r_disk) * PIXEL_SCALE
        out.append(injection.Galaxy(round_disk.shear(q=q, beta=pa * galsim.degrees), r50, 1.0, q, pa))
    return out


def main(out: str, n: int) -> None:
    galaxies = injection.draw_galaxies("knots", n, np.random.default_rng(2026))
    q = np.array([g.q for g in galaxies])
    result: dict = {"n_galaxies": n, "fwhm_px": FWHM_PX, "q_bins": [list(b) for b in Q_BINS], "readings": {}}
    rows = []
    for psf_name in ("kolmogorov", "moffat"):
        psf = injection._psf(psf_name, FWHM_PX)
        for convention in ("circularised", "circle"):
            cat = galaxies if convention == "circularised" else [
                dataclasses.replace(g, r50_arcsec=circle_radius(g)) for g in galaxies]
            ratio = np.array([reading(g, psf) for g in cat])
            entry = {"all": summary(ratio), "by_q": []}
            for lo, hi in Q_BINS:
                sel = (q >= lo) & (q < hi)
                entry["by_q"].append({"lo": lo, "hi": hi, "n": int(sel.sum()), **summary(ratio[sel])})
            result["readings"][f"{psf_name}/{convention}"] = entry
            rows.append((psf_name, convention, entry))
    control = disks(n, np.random.default_rng(2027))
    for psf_name in ("kolmogorov", "moffat"):
        psf = injection._psf(psf_name, FWHM_PX)
        result["readings"][f"{psf_name}/disk-control"] = {"all": summary(np.array([reading(g, psf) for g in control]))}
    print(f"{'PSF':11s} {'r50':13s} {'all':>22s} " + " ".join(f"q {lo:.1f}-{min(hi, 1.0):.1f}".rjust(10) for lo, hi in Q_BINS))
    for psf_name, convention, entry in rows:
        a = entry["all"]
        cells = " ".join(f"{b['median']:10.3f}" for b in entry["by_q"])
        print(f"{psf_name:11s} {convention:13s} {a['median']:8.3f} [{a['p16']:.3f}, {a['p84']:.3f}] {cells}")
    for psf_name in ("kolmogorov", "moffat"):
        a = result["readings"][f"{psf_name}/disk-control"]["all"]
        print(f"{psf_name:11s} {'disk control':13s} {a['median']:8.3f} [{a['p16']:.3f}, {a['p84']:.3f}]")
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300)
