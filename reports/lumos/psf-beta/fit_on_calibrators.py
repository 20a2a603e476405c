"""The Moffat β an exposure's own calibrators ask for: least residual power of their stamps, per frame.

    .venv/bin/python reports/lumos/psf-beta/fit_on_calibrators.py REPORT_DIR PSF_PROFILE OUT_JSON [FWHM_SCALES]

``FWHM_SCALES`` (comma-separated multiples of the frame's FWHM, e.g. ``0.85,0.9,0.95,1,1.05,1.1``)
also fits the model's FWHM jointly with β on the same stamps.

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


def _fit(models: np.ndarray, d: np.ndarray, usable: np.ndarray, variance: np.ndarray) -> tuple[float, np.ndarray]:
    """Each stamp's usable pixels ``d`` (sky subtracted) fitted with its model's amplitude and a constant:
    the residual chi-square summed over the stamps, and the amplitudes."""
    m = np.where(usable, models, 0.0)
    one = usable.astype(np.float64)
    g = np.stack([np.stack([(m * m).sum((1, 2)), (m * one).sum((1, 2))], -1),
                  np.stack([(m * one).sum((1, 2)), one.sum((1, 2))], -1)], 1)
    b = np.stack([(m * d).sum((1, 2)), d.sum((1, 2))], -1)
    a = np.linalg.solve(g, b[:, :, None])[:, :, 0]
    residual = np.where(usable, d - a[:, 0, None, None] * m - a[:, 1, None, None], 0.0)
    return float(((residual**2).sum((1, 2)) / variance).sum()), a[:, 0]


def main(report_dir: str, psf_profile: str, out_json: str, fwhm_scales: tuple[float, ...] = ()) -> None:
    """``fwhm_scales``: also fit the model's FWHM, as these multiples of the frame's, jointly with β
    (the table ``grid`` of the JSON and one more line per frame)."""
    config, common = _report_settings()(report_dir)
    common["psf_profile"] = psf_profile
    chi2: dict = collections.defaultdict(lambda: np.zeros(len(BETAS)))
    grid: dict = collections.defaultdict(lambda: np.zeros((len(fwhm_scales), len(BETAS))))
    ratios: dict = collections.defaultdict(lambda: [[] for _ in BETAS])
    counts: collections.Counter = collections.Counter()

    def record(ctx, frame, rows, data, usable, sky, variance):
        label = str(ctx.exposure.path).split(" (")[0]
        d = np.where(usable, data.astype(np.float64) - sky[:, None, None], 0.0)
        reference = frame["flux"].to_numpy(np.float64)[rows]
        size = data.shape[-1]

        def models_at(scale: float, beta: float) -> np.ndarray:
            return render_target_models(ctx.catalog.iloc[rows], ctx.stamps.dx[rows], ctx.stamps.dy[rows],
                                        psf_fwhm=scale * ctx.exposure.psf_fwhm, psf_beta=beta, size=size,
                                        pixel_scale=ctx.exposure.pixel_scale)[0]

        for i, beta in enumerate(BETAS):
            models = models_at(1.0, beta)
            if beta == (ctx.exposure.psf_beta or 3.5):
                # the production models, rendered again: the same to the renderer's precision
                assert np.allclose(models, ctx.models[rows], atol=1e-6), "models differ from the measurement's"
            value, amplitude = _fit(models, d, usable, variance)
            chi2[label][i] += value
            ratios[label][i].extend((amplitude / reference).tolist())
            for j, scale in enumerate(fwhm_scales):
                grid[label][j, i] += value if scale == 1.0 else _fit(models_at(scale, beta), d, usable, variance)[0]
        counts[label] += rows.size

    with _hook().calibrator_chunks(record):
        run_injection(config["frames"], InjectionConfig(population="sersic", seed=population_seed(config["seed"], "sersic"),
                                                        **common), methods=["optimal"], model=config["model"])
    out = {}
    print(f"{report_dir}, galaxies drawn with {psf_profile}: per β, Δχ² against β 3.5 | amplitude / reference (median ± spread)")
    for label, values in chi2.items():
        reference = values[BETAS.index(3.5)]
        rows = []
        for i, beta in enumerate(BETAS):
            r = np.asarray(ratios[label][i])
            r = r[np.isfinite(r)]
            rows.append({"beta": beta, "delta_chi2": float(values[i] - reference), "ratio_median": float(np.median(r)),
                         "ratio_spread": float(1.4826 * np.median(np.abs(r - np.median(r))))})
        best = BETAS[int(np.argmin(values))]
        out[label] = {"calibrators": counts[label], "best_beta": best, "by_beta": rows}
        print(f"  {label.split('/')[-1]:24s} {counts[label]:5d} calibrators, least residual at β {best}:  " + " | ".join(
            f"{r['beta']}: {r['delta_chi2']:+.0f}, {r['ratio_median']:.4f} ± {r['ratio_spread']:.4f}" for r in rows))
        if fwhm_scales:
            table = grid[label]
            j, i = np.unravel_index(int(np.argmin(table)), table.shape)
            out[label]["grid"] = {"fwhm_scales": list(fwhm_scales), "betas": list(BETAS),
                                  "delta_chi2": (table - reference).tolist(),
                                  "best": {"fwhm_scale": fwhm_scales[j], "beta": BETAS[i]}}
            print(f"  {'':24s} with the FWHM free: least residual at FWHM × {fwhm_scales[j]}, β {BETAS[i]} "
                  f"(Δχ² {table[j, i] - reference:+.0f} against the frame's FWHM and β 3.5)")
    with open(out_json, "w") as handle:
        json.dump({"report": report_dir, "psf_profile": psf_profile, "frames": out}, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3],
         tuple(float(v) for v in sys.argv[4].split(",")) if len(sys.argv) > 4 else ())
