"""Annulus background estimators on real frames: bias against the source-masked sky mean.

Run as ``.venv/bin/python benchmarks/bench_background_realdata.py [--data-dir /work/shared/realdata]
[--n 2000] [--seed 0] [--detect-sigma 2.0] [--grow 5] [--out FILE.json]``. Reads the frames and prints
the table; with ``--out`` it also writes every printed figure to ``FILE.json`` (:func:`report`), with
the exact command, the package version and the frames' SHA-256.

For each frame the sources are masked by a detection on the frame itself, independent of the
estimators' own: the image minus a coarse (32 px mesh) median background, smoothed by a Gaussian
of 1.5 px, thresholded at ``--detect-sigma`` times the robust (MAD) standard deviation of the
smoothed image, groups of at least 10 pixels kept, grown by a disc of ``--grow`` px. The pixels
left are the sky.

Annuli (30-45 px, the PAUS radii) are placed at ``n`` random positions and on the flux-weighted
centre of each detected source (sub-pixel offsets included), wholly inside the frame. For each
one the truth is the plain mean of the sky pixels of that same annulus, so that estimate and truth
share their pixels and differ only by how they reject sources; annuli with fewer than 20 % sky
pixels are skipped. ``bias`` is the mean of ``estimate - truth`` over the annuli (frame units per
pixel, and divided by the per-pixel noise ``s``, the standard deviation of the sky pixels), ``+-``
a jackknife error over 45 px blocks of annulus centres (the annuli overlap, so the blocks are not
fully independent: read it as a rough error). ``box bias`` is the bias against a larger-region
truth, the sky mean over the whole 93 x 93 px box around the annulus. ``used`` is the mean
fraction of annulus pixels the estimator averages, ``incomplete`` the fraction of annuli it flags
(ANNULUS_INCOMPLETE). ``masked_mean`` runs twice: with the sources detected in each cutout
(``annulus_background`` alone) and with those detected once on the whole frame, as the pipeline
runs it (``lumos_ops.photometry.frame_sources``). The ``sky only`` rows run estimators on the sky pixels alone (sources
blanked by the truth mask): what is left is the effect of the skewness of the sky noise.
``mean-median`` is the sky's mean minus median, over the frame and averaged over the annuli
(local, free of gradients); ``skew`` the skewness of the frame's sky pixels. ``rms/s`` is the
estimator's own pixel-noise estimate (the mean over the annuli of the square root of its
``variance``) in units of ``s``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std
from astropy.utils.exceptions import AstropyWarning
from scipy import ndimage

from lumos_ops.constants import ANNULUS_RADII
from lumos_ops.photometry.background import _DEFAULT_SIGMA, annulus_background
from lumos_ops.photometry.frame_sources import detect_frame_sources
from lumos_ops.provenance import code_provenance

FRAMES: tuple[str, ...] = ("sep_image.fits", "sdss_g.fits.bz2", "sdss_r.fits.bz2", "sdss_i.fits.bz2")
CONFIGS: tuple[tuple[str, str, float | None], ...] = (
    ("plain mean (no clip)", "clipped_mean", 1e6),
    ("median_clip 3 sigma (old)", "median_clip", None),
    ("clipped_mean 5 sigma", "clipped_mean", None),
    ("masked_mean (cutout detection)", "masked_mean", None),
    ("masked_mean (frame detection)", "masked_mean", None),
)
FRAME_DETECTION = "masked_mean (frame detection)"
"""The pipeline's configuration: sources detected once on the whole frame
(``lumos_ops.photometry.frame_sources``), their mask cut like the annuli."""
SKY_CONFIGS: tuple[tuple[str, str, float | None], ...] = (
    ("sky only: median_clip (old)", "median_clip", None),
    ("sky only: clipped_mean 6 sig", "clipped_mean", 6.0),
)
"""Estimators run on the sky pixels alone (sources blanked by the truth mask): the skewness effect."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame, its sky mask and the sky statistics."""

    name: str
    unit: str
    image: np.ndarray
    detected: np.ndarray
    sky: np.ndarray
    frame_mask: np.ndarray
    noise: float
    mean_minus_median: float
    skew: float


def load_frame(path: Path, *, detect_sigma: float, grow: int) -> Frame:
    """Read ``path`` (first HDU) and mask its sources (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path) as hdul:
            image = np.asarray(hdul[0].data, dtype=np.float64)
            unit = str(hdul[0].header.get("BUNIT", "ADU")).strip() or "ADU"
    detected = detect_sources(image, detect_sigma=detect_sigma)
    yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
    sky = ~ndimage.binary_dilation(detected, structure=xx**2 + yy**2 <= grow**2) & np.isfinite(image)
    pixels = image[sky]
    noise = float(pixels.std())
    skew = float(np.mean((pixels - pixels.mean()) ** 3) / noise**3)
    frame_mask = detect_frame_sources(image).mask
    return Frame(path.name, unit, image, detected, sky, frame_mask, noise, float(pixels.mean() - np.median(pixels)), skew)


def detect_sources(image: np.ndarray, *, detect_sigma: float, mesh: int = 32, min_area: int = 10) -> np.ndarray:
    """Boolean mask of the pixels of the sources detected in ``image`` (not grown)."""
    ny, nx = image.shape
    by, bx = -(-ny // mesh), -(-nx // mesh)
    padded = np.full((by * mesh, bx * mesh), np.nan)
    padded[:ny, :nx] = image
    blocks = padded.reshape(by, mesh, bx, mesh).transpose(0, 2, 1, 3).reshape(by, bx, -1)
    coarse = ndimage.median_filter(np.nanmedian(blocks, axis=2), size=3, mode="nearest")
    background = ndimage.zoom(coarse, (ny / by, nx / bx), order=1)[:ny, :nx]
    smooth = ndimage.gaussian_filter(np.nan_to_num(image - background), 1.5)
    detected = smooth > detect_sigma * mad_std(smooth)
    labels, count = ndimage.label(detected)
    area = ndimage.sum(detected, labels, np.arange(1, count + 1))
    return np.concatenate([[False], area >= min_area])[labels]


def random_centres(frame: Frame, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random positions (x, y; pixels) whose annulus lies wholly inside the frame."""
    half = math.ceil(ANNULUS_RADII[1]) + 1
    ny, nx = frame.image.shape
    rng = np.random.default_rng(seed)
    return rng.uniform(half, nx - half - 1, n), rng.uniform(half, ny - half - 1, n)


def source_centres(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Flux-weighted centres (x, y; pixels) of the detected sources whose annulus fits the frame."""
    labels, count = ndimage.label(frame.detected)
    weight = np.clip(frame.image - np.median(frame.image[frame.sky]), 0.0, None)
    centres = np.array(ndimage.center_of_mass(weight, labels, np.arange(1, count + 1))).reshape(-1, 2)
    half = math.ceil(ANNULUS_RADII[1]) + 1
    ny, nx = frame.image.shape
    y, x = centres[:, 0], centres[:, 1]
    inside = (x >= half) & (x <= nx - half - 1) & (y >= half) & (y <= ny - half - 1)
    return x[inside], y[inside]


def measure(frame: Frame, x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """Bias of each estimator of :data:`CONFIGS` on annuli centred on ``(x, y)`` (pixels)."""
    r_in, r_out = ANNULUS_RADII
    half = math.ceil(r_out) + 1
    xc, yc = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    dx, dy = x - xc, y - yc
    n = xc.size
    window = np.arange(-half, half + 1)
    rows = yc[:, None, None] + window[None, :, None]
    cols = xc[:, None, None] + window[None, None, :]
    cutouts = frame.image[rows, cols]
    sky = frame.sky[rows, cols]
    radius = np.hypot(window[None, None, :] - dx[:, None, None], window[None, :, None] - dy[:, None, None])
    annulus = (radius >= r_in) & (radius <= r_out)
    sky_in_annulus = sky & annulus
    n_sky = sky_in_annulus.sum(axis=(1, 2))
    good = n_sky >= 0.2 * annulus.sum(axis=(1, 2))
    if not good.any():
        return {"n_annuli": 0}
    truth = np.where(sky_in_annulus, cutouts, 0.0).sum(axis=(1, 2)) / np.maximum(n_sky, 1)
    truth_box = np.where(sky, cutouts, 0.0).sum(axis=(1, 2)) / np.maximum(sky.sum(axis=(1, 2)), 1)
    local = np.where(sky_in_annulus, cutouts, np.nan).reshape(n, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        local_mm = np.nanmean(local, axis=1) - np.nanmedian(local, axis=1)
    block = (yc // r_out).astype(np.int64) * 1000 + (xc // r_out).astype(np.int64)
    result: dict[str, object] = {"n_annuli": int(good.sum()), "local_mean_minus_median": float(local_mm[good].mean())}
    sky_cutouts = np.where(sky, cutouts, np.nan)
    for label, estimator, sigma in CONFIGS + SKY_CONFIGS:
        data = sky_cutouts if (label, estimator, sigma) in SKY_CONFIGS else cutouts
        source_mask = frame.frame_mask[rows, cols] if label == FRAME_DETECTION else None
        bg = annulus_background(data, dx, dy, estimator=estimator, sigma=sigma,  # type: ignore[arg-type]
                                source_mask=source_mask)
        result[label] = (
            jackknife(bg.mean[good] - truth[good], block[good]),
            jackknife(bg.mean[good] - truth_box[good], block[good]),
            float(bg.incomplete[good].mean()),
            float(np.mean(bg.n_used[good] / bg.n_total[good])),
            float(np.mean(np.sqrt(bg.variance[good]))),
        )
    return result


def jackknife(values: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Mean of ``values`` and its delete-one-group jackknife standard error."""
    labels = np.unique(groups)
    total, count = values.sum(), values.size
    sums = np.array([values[groups == g].sum() for g in labels])
    counts = np.array([(groups == g).sum() for g in labels])
    means = (total - sums) / (count - counts)
    g = labels.size
    return float(values.mean()), float(np.sqrt((g - 1) / g * np.sum((means - means.mean()) ** 2)))


TRUTH = ("the plain mean of the sky pixels (outside the grown truth mask) of the same annulus; "
         "box: the sky mean over the 93 x 93 px box around it")
"""The truth every bias is measured against (see the module docstring)."""


def frame_record(frame: Frame, placements: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    """Every figure of one frame: its sky statistics and, per placement of the annuli and per
    estimator, the bias against :data:`TRUTH` (frame units per pixel and units of the noise ``s``),
    its jackknife error, the box bias, the share of pixels used, the flagged share and ``rms/s``."""
    s = frame.noise
    record: dict[str, object] = {
        "frame": frame.name,
        "unit": frame.unit,
        "shape": list(frame.image.shape),
        "sky_fraction": float(frame.sky.mean()),
        "noise_s": s,
        "skew": frame.skew,
        "mean_minus_median": frame.mean_minus_median,
        "mean_minus_median_s": frame.mean_minus_median / s,
        "placements": {},
    }
    for where, (x, y) in placements.items():
        r = measure(frame, x, y) if np.size(x) else {"n_annuli": 0}
        if not r["n_annuli"]:
            record["placements"][where] = {"n_annuli": 0, "annulus_mean_minus_median": None,  # type: ignore[index]
                                           "annulus_mean_minus_median_s": None, "estimators": {}}
            continue
        mm = float(r["local_mean_minus_median"])  # type: ignore[arg-type]
        estimators: dict[str, object] = {}
        for label, estimator, sigma in CONFIGS + SKY_CONFIGS:
            (bias, err), (box, box_err), incomplete, used, rms = r[label]  # type: ignore[misc]
            estimators[label] = {
                "estimator": estimator,
                "sigma": _DEFAULT_SIGMA[estimator] if sigma is None else sigma,
                "pixels": "sky only" if (label, estimator, sigma) in SKY_CONFIGS else "all",
                "source_mask": "frame detection" if label == FRAME_DETECTION else None,
                "bias": bias,
                "bias_err": err,
                "bias_s": bias / s,
                "bias_err_s": err / s,
                "box_bias": box,
                "box_bias_err": box_err,
                "box_bias_s": box / s,
                "used": used,
                "incomplete": incomplete,
                "rms_s": rms / s,
            }
        record["placements"][where] = {  # type: ignore[index]
            "n_annuli": int(r["n_annuli"]),  # type: ignore[call-overload]
            "annulus_mean_minus_median": mm,
            "annulus_mean_minus_median_s": mm / s,
            "estimators": estimators,
        }
    return record


def print_frame(record: dict) -> None:
    """Print one :func:`frame_record` as the table."""
    s = record["noise_s"]
    print()
    print(f"{record['frame']}: sky {record['sky_fraction']:.0%} of the frame, noise s = {s:.4g}, skew {record['skew']:.2f}, "
          f"mean-median {record['mean_minus_median']:.4g} ({record['mean_minus_median_s']:+.3f} s) over the frame")
    for where, p in record["placements"].items():
        if not p["n_annuli"]:
            print(f"  {where}: no annulus with enough sky")
            continue
        mm = p["annulus_mean_minus_median"]
        print(f"  {where}: {p['n_annuli']} annuli, sky mean-median in the annulus {mm:.4g} ({mm / s:+.3f} s)")
        print(f"    {'estimator':<28} {'bias/pixel':>11} {'+-':>9} {'bias/s':>8} {'+-':>7} {'box bias/s':>11} {'used':>6} "
              f"{'incomplete':>11} {'rms/s':>6}")
        for label, e in p["estimators"].items():
            print(
                f"    {label:<28} {e['bias']:>11.4g} {e['bias_err']:>9.2g} {e['bias_s']:>+8.4f} {e['bias_err_s']:>7.4f} "
                f"{e['box_bias_s']:>+11.4f} {e['used']:>6.0%} {e['incomplete']:>11.1%} {e['rms_s']:>6.3f}"
            )


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as run (the interpreter relative to the working directory when inside it)."""
    python = sys.executable or "python"
    if os.path.isabs(python) and not (relative := os.path.relpath(python)).startswith(".."):
        python = relative if os.sep in relative else f".{os.sep}{relative}"
    return shlex.join([python, *(sys.argv if argv is None else [sys.argv[0], *argv])])


def sha256(path: Path) -> str:
    """SHA-256 of the file at ``path`` (as stored, compressed or not)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def json_safe(value: object) -> object:
    """``value`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report(args: argparse.Namespace, records: list[dict], command: str) -> dict[str, object]:
    """The JSON written by ``--out``: every printed figure, with how it was made."""
    return {
        "what": __doc__.splitlines()[0],
        "command": command,
        "code": code_provenance(),
        "parameters": {"data_dir": str(args.data_dir), "n": args.n, "seed": args.seed,
                       "detect_sigma": args.detect_sigma, "grow": args.grow},
        "annulus_radii_px": list(ANNULUS_RADII),
        "truth": TRUTH,
        "units": ("bias, bias_err, box_bias, mean_minus_median: frame units per pixel (the frame's 'unit'); *_s: the same "
                  "divided by noise_s, the standard deviation of the frame's sky pixels; used, incomplete: fractions; "
                  "rms_s: the estimator's mean pixel-noise estimate over noise_s; bias_err: jackknife over 45 px "
                  "blocks of annulus centres (rough: the annuli overlap)"),
        "frames": [{**record, "sha256": sha256(args.data_dir / record["frame"])} for record in records],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/realdata"))
    parser.add_argument("--n", type=int, default=2000, help="random annuli per frame (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detect-sigma", type=float, default=2.0, help="source detection threshold (default 2)")
    parser.add_argument("--grow", type=int, default=5, help="source mask growth radius, px (default 5)")
    parser.add_argument("--out", type=Path, default=None, help="also write every printed figure to this JSON file")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.suffix != ".json":
        parser.error(f"--out must name a .json file, got {str(args.out)!r}")
    print(
        f"annuli {ANNULUS_RADII[0]:g}-{ANNULUS_RADII[1]:g} px, {args.n} random per frame (seed {args.seed}) and one "
        f"on each detected source; sources masked at {args.detect_sigma:g} sigma grown by {args.grow} px"
    )
    records = []
    for name in FRAMES:
        frame = load_frame(args.data_dir / name, detect_sigma=args.detect_sigma, grow=args.grow)
        records.append(frame_record(frame, {"random": random_centres(frame, args.n, args.seed),
                                            "on sources": source_centres(frame)}))
        print_frame(records[-1])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(json_safe(report(args, records, command_line(argv))), indent=1, allow_nan=False) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
