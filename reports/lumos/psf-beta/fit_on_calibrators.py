"""The Moffat β an exposure's own calibrators ask for: least residual power of their stamps, per frame.

    .venv/bin/python reports/lumos/psf-beta/fit_on_calibrators.py REPORT_DIR PSF_PROFILE OUT_JSON [FWHM_SCALES]

``FWHM_SCALES`` (comma-separated multiples of the frame's FWHM, e.g. ``0.85,0.9,0.95,1,1.05,1.1``)
also fits the model's FWHM jointly with β on the same stamps; per grid point the JSON also gives
the median, over the calibrators, of each one's amplitude over its amplitude with the default model
(``reading_over_default``: how the flux would move). ``--window`` (after the other
arguments) fits each stamp only within :data:`WINDOW_FWHM` FWHM plus :data:`WINDOW_R50` half-light
radii plus :data:`WINDOW_MARGIN_PX` of its galaxy, with a sloped sky (amplitude, constant and two
slopes), instead of the whole stamp with a constant.

The report's Sérsic galaxies are injected again into its frames with its seeds and configuration,
drawn with ``PSF_PROFILE`` (``kolmogorov``, ``moffat`` at the measurement's β 3.5, or ``stars``: each
frame's own stars' PSF, Kolmogorov where a frame has too few), and measured with the optimal sum.
The aperture correction's calibrators of each copy (isolated, matched-filter SNR >= 40: the stamps
:func:`lumos_ops.aperture_correction._synthetic_blends` uses) are kept. Their catalogue models are
rendered again with the frame's FWHM and each β of :data:`BETAS`. Each stamp's usable pixels are
fitted with the model's amplitude and a constant. Per frame and β, the printout gives:

- the summed residual chi-square over the calibrators, less its value at β 3.5;
- the median and spread of the amplitudes over the large-aperture references, which the aperture
  correction would divide out.

The β with the least residual is what a fit on the exposure would choose.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from lumos_ops.evaluation.injection import InjectionConfig, population_seed, run_injection
from lumos_ops.measure import render_target_models

BETAS = (3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0)


def _script(relative: str):
    """A sibling report script of ``reports/lumos`` as a module."""
    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report_settings():
    return _script("crosstalk/splice_blended.py").report_settings


def _hook():
    return _script("crosstalk/calibrator_hook.py")


WINDOW_FWHM: float = 3.0
"""``--window``: FWHM of the frame's PSF in the fitted disc's radius (pixels)."""

WINDOW_R50: float = 2.0
"""``--window``: catalogue half-light radii in the fitted disc's radius."""

WINDOW_MARGIN_PX: float = 6.0
"""``--window``: pixels added to the fitted disc's radius, which hold the sky's constant and slopes."""


def _window(ctx, rows: np.ndarray, size: int) -> np.ndarray:
    """Boolean (n, size, size): the disc ``--window`` fits around each calibrator's galaxy."""
    r50 = ctx.catalog["r50"].to_numpy(np.float64)[rows] / ctx.exposure.pixel_scale
    radius = WINDOW_FWHM * ctx.exposure.psf_fwhm + WINDOW_R50 * r50 + WINDOW_MARGIN_PX
    grid = np.arange(size) - size // 2
    dx, dy = ctx.stamps.dx[rows], ctx.stamps.dy[rows]
    r2 = (grid[None, None, :] - dx[:, None, None]) ** 2 + (grid[None, :, None] - dy[:, None, None]) ** 2
    return r2 <= radius[:, None, None] ** 2


def _fit(models: np.ndarray, d: np.ndarray, usable: np.ndarray, variance: np.ndarray,
         window: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Each stamp's usable pixels ``d`` (sky subtracted) fitted with its model's amplitude and a constant
    (``window`` None), or within ``window`` with the amplitude, a constant and two slopes: the residual
    chi-square summed over the stamps, the amplitudes and their errors under white pixel noise of
    ``variance``."""
    use = usable if window is None else usable & window
    size = d.shape[-1]
    ramp = (np.arange(size) - size // 2) / float(size)
    templates = [np.where(use, models, 0.0), use.astype(np.float64)]
    if window is not None:
        templates += [np.where(use, ramp[None, None, :], 0.0), np.where(use, ramp[None, :, None], 0.0)]
    t = np.stack(templates, axis=1).reshape(d.shape[0], len(templates), -1)
    data = np.where(use, d, 0.0).reshape(d.shape[0], -1)
    g = np.matmul(t, t.transpose(0, 2, 1))
    b = np.matmul(t, data[:, :, None])
    a = np.linalg.solve(g, b)[:, :, 0]
    residual = data - np.einsum("nk,nkp->np", a, t)
    error = np.sqrt(variance * np.linalg.inv(g)[:, 0, 0])
    return float(((residual**2).sum(1) / variance).sum()), a[:, 0], error


def _truth_spread(ratios: list[float], errors: list[float]) -> dict[str, float]:
    """The calibrators' amplitude over their true flux: its median, the spread of each ratio over that
    median (sigma68, :func:`lumos_ops.stats.sigma68`), the median white-noise error of the ratio, and the
    spread beyond that noise (``sqrt(spread^2 - noise^2)``, 0 when the noise explains it): the model's
    error that one factor per exposure leaves, which the error floor has to cover."""
    from lumos_ops.stats import sigma68

    r, e = np.asarray(ratios), np.asarray(errors)
    keep = np.isfinite(r) & np.isfinite(e)
    r, e = r[keep], e[keep]
    median = float(np.median(r))
    spread = float(sigma68(r / median))
    noise = float(np.median(e / median))
    return {"median": median, "spread": spread, "noise": noise, "excess": float(np.sqrt(max(spread**2 - noise**2, 0.0)))}


def main(report_dir: str, psf_profile: str, out_json: str, fwhm_scales: tuple[float, ...] = (), *,
         windowed: bool = False) -> None:
    """``fwhm_scales``: also fit the model's FWHM, as these multiples of the frame's, jointly with β
    (the table ``grid`` of the JSON and one more line per frame); ``windowed``: ``--window``."""
    config, common = _report_settings()(report_dir)
    common["psf_profile"] = psf_profile
    chi2: dict = collections.defaultdict(lambda: np.zeros(len(BETAS)))
    grid: dict = collections.defaultdict(lambda: np.zeros((len(fwhm_scales), len(BETAS))))
    ratios: dict = collections.defaultdict(lambda: [[] for _ in BETAS])
    readings: dict = collections.defaultdict(lambda: [[[] for _ in BETAS] for _ in fwhm_scales])
    truth: dict = collections.defaultdict(lambda: [([], []) for _ in BETAS])
    counts: collections.Counter = collections.Counter()

    def record(ctx, frame, rows, data, usable, sky, variance):
        label = str(ctx.exposure.path).split(" (")[0]
        d = np.where(usable, data.astype(np.float64) - sky[:, None, None], 0.0)
        reference = frame["flux"].to_numpy(np.float64)[rows]
        # an injection's catalogue holds each galaxy's true flux as i_auto = 26 - 2.5 log10(flux)
        true_flux = 10.0 ** ((26.0 - ctx.catalog["i_auto"].to_numpy(np.float64)[rows]) / 2.5)
        size = data.shape[-1]
        window = _window(ctx, rows, size) if windowed else None

        def models_at(scale: float, beta: float) -> np.ndarray:
            return render_target_models(ctx.catalog.iloc[rows], ctx.stamps.dx[rows], ctx.stamps.dy[rows],
                                        psf_fwhm=scale * ctx.exposure.psf_fwhm, psf_beta=beta, size=size,
                                        pixel_scale=ctx.exposure.pixel_scale)[0]

        default = _fit(models_at(1.0, 3.5), d, usable, variance, window)[1]
        for i, beta in enumerate(BETAS):
            models = models_at(1.0, beta)
            if beta == (ctx.exposure.psf_beta or 3.5):
                # the production models, rendered again: the same to the renderer's precision
                assert np.allclose(models, ctx.models[rows], atol=1e-6), "models differ from the measurement's"
            value, amplitude, error = _fit(models, d, usable, variance, window)
            chi2[label][i] += value
            ratios[label][i].extend((amplitude / reference).tolist())
            truth[label][i][0].extend((amplitude / true_flux).tolist())
            truth[label][i][1].extend((error / true_flux).tolist())
            for j, scale in enumerate(fwhm_scales):
                value_j, amplitude_j, _ = ((value, amplitude, error) if scale == 1.0 else
                                           _fit(models_at(scale, beta), d, usable, variance, window))
                grid[label][j, i] += value_j
                readings[label][j][i].extend((amplitude_j / default).tolist())
        counts[label] += rows.size

    with _hook().calibrator_chunks(record):
        run_injection(config["frames"], InjectionConfig(population="sersic", seed=population_seed(config["seed"], "sersic"),
                                                        **common), methods=["optimal"], model=config["model"])
    out = {}
    fit = "within a disc around each galaxy, sloped sky" if windowed else "whole stamps, constant sky"
    print(f"{report_dir} ({fit}), galaxies drawn with {psf_profile}: per β, Δχ² against β 3.5 | amplitude / reference (median ± spread)")
    for label, values in chi2.items():
        reference = values[BETAS.index(3.5)]
        rows = []
        for i, beta in enumerate(BETAS):
            r = np.asarray(ratios[label][i])
            r = r[np.isfinite(r)]
            rows.append({"beta": beta, "delta_chi2": float(values[i] - reference), "ratio_median": float(np.median(r)),
                         "ratio_spread": float(1.4826 * np.median(np.abs(r - np.median(r)))),
                         "truth": _truth_spread(*truth[label][i])})
        best = BETAS[int(np.argmin(values))]
        out[label] = {"calibrators": counts[label], "best_beta": best, "by_beta": rows}
        print(f"  {label.split('/')[-1]:24s} {counts[label]:5d} calibrators, least residual at β {best}:  " + " | ".join(
            f"{r['beta']}: {r['delta_chi2']:+.0f}, {r['ratio_median']:.4f} ± {r['ratio_spread']:.4f}" for r in rows))
        print(f"  {'':24s} amplitude / true flux, over its frame's median (the aperture factor): spread beyond "
              "the noise " + " | ".join(f"{r['beta']}: {100 * r['truth']['excess']:.2f} %" for r in rows)
              + f" (noise {100 * rows[0]['truth']['noise']:.2f} %)")
        if fwhm_scales:
            table = grid[label]
            j, i = np.unravel_index(int(np.argmin(table)), table.shape)
            reading = np.array([[np.nanmedian(cell) for cell in row] for row in readings[label]])
            out[label]["grid"] = {"fwhm_scales": list(fwhm_scales), "betas": list(BETAS),
                                  "delta_chi2": (table - reference).tolist(),
                                  "reading_over_default": reading.tolist(),
                                  "best": {"fwhm_scale": fwhm_scales[j], "beta": BETAS[i]}}
            print(f"  {'':24s} with the FWHM free: least residual at FWHM × {fwhm_scales[j]}, β {BETAS[i]} "
                  f"(Δχ² {table[j, i] - reference:+.0f} against the frame's FWHM and β 3.5; amplitude "
                  f"{reading[j, i]:.4f} of the default model's, median over the calibrators)")
    with open(out_json, "w") as handle:
        json.dump({"report": report_dir, "psf_profile": psf_profile, "windowed": windowed, "frames": out}, handle,
                  indent=1)


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--window"]
    main(arguments[0], arguments[1], arguments[2],
         tuple(float(v) for v in arguments[3].split(",")) if len(arguments) > 3 else (), windowed="--window" in sys.argv)
