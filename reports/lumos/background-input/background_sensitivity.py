"""Does LUMOS read the pixel noise from its scalar background input?

Runs a LUMOS checkpoint on the stamps of a TEAHUPOO set with the pixels unchanged and the
standardised background scalar (``SCALAR_NAMES[3]``: stamp median b in e-/s per pixel) replaced by
fixed values of b, and scores each run at fixed true flux (``fixed_truth_bins``). Also logs the
standardised background the network sees on real frames under ``lumos inject``'s gain mapping.

Usage::

    python background_sensitivity.py MODEL TEST_SET OUT.json FRAME [FRAME ...] [--levels B [B ...]]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from lumos_ops.evaluation.fixed_truth import TRUE_FLUX_EDGES, fixed_truth_bins
from lumos_ops.evaluation.injection import InjectionConfig, frame_header, noise_autocovariance, read_frame
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.inference import mixture_table, predict_mixtures
from lumos_ops.lumos.preprocess import prepare_inputs

LEVELS = (0.0, 1.0, 3.5, 7.156, 14.0, 21.0, 35.0)
"""Background values b (e-/s per pixel) fed to the network in place of each stamp's own median."""

STAMP = 48
"""Half-size of the boxes whose medians sample a real frame's stamp backgrounds (pixels)."""


def frame_backgrounds(loaded, paths: list[str]) -> list[dict]:
    """Standardised background of each real frame in e-/s under ``lumos inject``'s gain mapping."""
    norm = loaded.normalization
    config = InjectionConfig()
    rows = []
    for path in paths:
        data = read_frame(path)
        cov = noise_autocovariance(data)
        sig = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
        header = frame_header(sig, training_noise=float(norm.pixel_scale), noise_ratio=config.noise_ratio,
                              band=config.band, psf_fwhm_px=3.0, exptime=config.source_exptime)
        scale = header["GAIN"] / header["EXPTIME"]
        ny, nx = data.shape
        meds = [np.nanmedian(data[y:y + 2 * STAMP, x:x + 2 * STAMP]) * scale
                for y in range(0, ny - 2 * STAMP, 2 * STAMP) for x in range(0, nx - 2 * STAMP, 2 * STAMP)]
        meds = np.asarray(meds, dtype=np.float64)
        z = (meds - norm.background_mean) / norm.background_std
        rows.append({"frame": path, "gain": header["GAIN"], "exptime": header["EXPTIME"],
                     "noise_e_per_s": sig * scale, "background_e_per_s_median": float(np.median(meds)),
                     "background_e_per_s_p5_p95": [float(v) for v in np.percentile(meds, [5, 95])],
                     "standardised_median": float(np.median(z)),
                     "standardised_p5_p95": [float(v) for v in np.percentile(z, [5, 95])]})
    return rows


def main(model: str, test_set: str, out: str, frames: list[str], levels: tuple[float, ...] = LEVELS) -> None:
    loaded = load_checkpoint(model, device="cpu")
    norm = loaded.normalization
    real = frame_backgrounds(loaded, frames)
    print(json.dumps(real, indent=1), flush=True)
    ts = TrainingSet(test_set)
    ids = np.arange(len(ts.meta))
    size = loaded.net.config.stamp_size
    off = ts.stamp_size // 2 - size // 2
    meta = ts.meta
    images = ts.images(ids)[:, :, off:off + size, off:off + size]
    i_auto = meta["i_auto"].to_numpy(np.float64)
    inputs = prepare_inputs(images[:, 0], images[:, 1], i_auto, meta["ccd_x"].to_numpy(), meta["ccd_y"].to_numpy(),
                            meta["band_epoch"].to_numpy(np.int64), norm)
    own = inputs.scalars[:, 3] * norm.background_std + norm.background_mean
    truth = meta["flux"].to_numpy(np.float64)
    runs = {}
    for level in (None, *levels):
        scalars = inputs.scalars.copy()
        if level is not None:
            scalars[:, 3] = (level - norm.background_mean) / norm.background_std
        table = mixture_table(predict_mixtures(loaded, dataclasses.replace(inputs, scalars=scalars), i_auto),
                              likelihood=loaded.is_likelihood)
        key = "own" if level is None else f"b={level:g}"
        runs[key] = {"b_e_per_s": level, "standardised": None if level is None else float(scalars[0, 3]),
                     "bins": fixed_truth_bins(truth, table["flux"], table["flux_err"], edges=TRUE_FLUX_EDGES)}
        print(key, [(r["lo"], round(r["bias"], 3), round(r["sigma68"], 3), round(r["pull_sigma68"], 2),
                     round(r["coverage68"], 3)) for r in runs[key]["bins"]], flush=True)
    result = {"model": model, "test_set": test_set, "n_stamps": int(ids.size),
              "normalization": {"background_mean": norm.background_mean, "background_std": norm.background_std},
              "test_set_own_background_e_per_s": {"mean": float(own.mean()), "std": float(own.std()),
                                                   "p5_p95": [float(v) for v in np.percentile(own, [5, 95])]},
              "runs": runs, "real_frames": real}
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("test_set")
    parser.add_argument("out")
    parser.add_argument("frames", nargs="*")
    parser.add_argument("--levels", type=float, nargs="*", default=list(LEVELS))
    args = parser.parse_args()
    main(args.model, args.test_set, args.out, args.frames, tuple(args.levels))
