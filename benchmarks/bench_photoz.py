"""Photo-z benchmark: speed of the template fit and accuracy versus signal-to-noise on simulated galaxies.

Run as ``.venv/bin/python benchmarks/bench_photoz.py [--n 2000] [--threads 1] [--seed 0]``.
Galaxies are drawn exactly as the survey simulator draws its catalogue (``draw_galaxies``: CWW
mixtures, Calzetti reddening, COSMOS-like n(z | i)); their true 40-band fluxes get Gaussian noise.

* ``snr`` rows: a constant error per source giving the stated SNR at the source's median band flux.
* ``sky`` rows: a sky-limited constant error per band (the same for every source) giving SNR 5 to a
  flat-spectrum i = 22.5 galaxy, reported per i_auto bin — fainter galaxies are noisier, as in PAUS.
* ``missing`` rows: the sky-limited noise with 30 % of the bands dropped at random.
* ``outliers`` rows: 1.5 % of the sky-limited fluxes shifted by 10-50 sigma (paper Appendix D), fitted
  without and with the band rejection ``PhotozConfig(clip_sigma=5)``.
Each line gives sigma68 / NMAD / outlier fraction (|dz| > 0.02) / bias of z_mode, for all sources and
for the best 50 % by ``qz``; timings are wall-clock seconds of :func:`fit_photoz` alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="galaxies (default 2000)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    run(args.n, args.seed)


def run(n: int, seed: int) -> None:
    """Print the timing and accuracy tables (imports numpy after the thread variables are set)."""
    import numpy as np

    from lumos_ops.photoz import MagnitudePrior, PhotozConfig, binned_photoz_metrics, build_template_grid, fit_photoz
    from lumos_ops.photoz.metrics import best_fraction_mask, photoz_metrics
    from lumos_ops.sim.population import draw_galaxies, njy_columns
    from lumos_ops.sim.seds import mag_to_njy

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={os.environ['OMP_NUM_THREADS']}")
    start = time.perf_counter()
    grid = build_template_grid()
    print(f"template grid {grid.models.shape} built in {time.perf_counter() - start:.2f} s ({grid.n_models} models)")
    rng = np.random.default_rng(seed)
    gal = draw_galaxies(rng, n)
    true = gal[njy_columns()].to_numpy()
    zspec = gal.zspec.to_numpy()
    i_auto = gal.i_auto.to_numpy()

    def line(label: str, result, seconds: float) -> None:  # noqa: ANN001
        full = photoz_metrics(result.z_mode, zspec)
        best = best_fraction_mask(result.qz, 0.5)
        half = photoz_metrics(result.z_mode[best], zspec[best])
        print(
            f"{label:<22} {seconds:7.2f} {n / seconds:8.0f}   "
            f"{full['sigma68']:.4f} {full['nmad']:.4f} {full['outlier_fraction']:6.3f} {full['bias']:+.4f}   "
            f"{half['sigma68']:.4f} {half['nmad']:.4f} {half['outlier_fraction']:6.3f}"
        )

    print(f"\n{n} galaxies, 40 bands, i_auto 17.5-23")
    print(f"{'case':<22} {'fit s':>7} {'src/s':>8}   {'s68':>6} {'NMAD':>6} {'outl':>6} {'bias':>7}   "
          f"{'s68@50':>6} {'NMAD':>6} {'outl':>6}")
    for snr in (np.inf, 100.0, 30.0, 10.0, 5.0, 3.0):
        err = np.repeat(np.median(true, axis=1, keepdims=True) / (snr if np.isfinite(snr) else 50.0), 40, axis=1)
        flux = true if not np.isfinite(snr) else true + err * rng.normal(size=true.shape)
        start = time.perf_counter()
        result = fit_photoz(flux, err, grid=grid)
        line("noiseless (2% err)" if not np.isfinite(snr) else f"snr {snr:g}", result, time.perf_counter() - start)

    sky_err = np.full_like(true, mag_to_njy(22.5) / 5.0)
    sky_flux = true + sky_err * rng.normal(size=true.shape)
    cases = {}
    for label, prior in (("sky", None), ("sky + prior", MagnitudePrior())):
        start = time.perf_counter()
        cases[label] = fit_photoz(sky_flux, sky_err, grid=grid, prior=prior, i_mag=i_auto)
        line(label, cases[label], time.perf_counter() - start)
    holes = np.where(rng.uniform(size=true.shape) < 0.3, np.nan, sky_flux)
    start = time.perf_counter()
    line("sky, 30% bands missing", fit_photoz(holes, np.where(np.isnan(holes), np.nan, sky_err), grid=grid),
         time.perf_counter() - start)

    hit = rng.uniform(size=true.shape) < 0.015
    shifted = sky_flux + hit * sky_err * rng.uniform(10.0, 50.0, size=true.shape) * rng.choice([-1.0, 1.0], size=true.shape)
    for label, config in (("sky, 1.5% outliers", None), ("  ... clip_sigma=5", PhotozConfig(clip_sigma=5.0))):
        start = time.perf_counter()
        line(label, fit_photoz(shifted, sky_err, grid=grid, config=config), time.perf_counter() - start)

    for label, result in cases.items():
        table = binned_photoz_metrics(result.z_mode, zspec, i_auto, quality=result.qz)
        print(f"\n{label}: per i_auto bin (all | best 50 % by qz)")
        print(f"{'i_auto':>10} {'n':>5} {'s68':>7} {'outl':>6} | {'n':>5} {'s68':>7} {'outl':>6}")
        full = table[table.fraction == 1.0].reset_index(drop=True)
        half = table[table.fraction == 0.5].reset_index(drop=True)
        for a, b in zip(full.itertuples(), half.itertuples()):
            print(f"{a.bin:>10} {a.n:>5} {a.sigma68:7.4f} {a.outlier_fraction:6.3f} | {b.n:>5} {b.sigma68:7.4f} {b.outlier_fraction:6.3f}")


if __name__ == "__main__":
    main()
