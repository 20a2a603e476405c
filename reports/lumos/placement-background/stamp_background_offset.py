"""Stamp background against the frame's masked sky mean at clear positions, in pixel-noise units.

Usage: ``.venv/bin/python reports/lumos/placement-background/stamp_background_offset.py SIM_SURVEY_DIR``
(``SIM_SURVEY_DIR``: the simulated survey of ``lumos-fast-v11``'s recipe). For the four real frames of
``shared/realdata`` and every 80th simulated exposure: 300 positions >= 6 px from the frame's own
sources (``source_clearance``), the 60 x 60 stamp there; reference = mean of the stamp's pixels
outside the frame's detected sources (``frame_sources``). Prints the median offset of the stamp
median and of the masked annulus (``stamp_background(..., "masked_annulus")``) from it, and the
CPU time of the masked annulus per stamp.
"""

import glob
import sys
import time

import numpy as np

from lumos_ops.evaluation.injection import read_frame, robust_sigma
from lumos_ops.lumos.preprocess import stamp_background
from lumos_ops.noise_calibration import source_clearance
from lumos_ops.photometry.frame_sources import frame_sources

rng = np.random.default_rng(0)
frames = [f"/work/shared/realdata/{n}" for n in ("sep_image.fits", "sdss_g.fits.bz2", "sdss_r.fits.bz2", "sdss_i.fits.bz2")]
frames += sorted(glob.glob(f"{sys.argv[1]}/exposures/**/*.fits", recursive=True))[::80]
for f in frames:
    d = read_frame(f).astype(np.float32)
    med, sig = robust_sigma(d)
    clear, fs = source_clearance(d), frame_sources(d)
    ny, nx = d.shape
    stamps, ref = [], []
    while len(stamps) < 300:
        y, x = rng.integers(30, ny - 30), rng.integers(30, nx - 30)
        if clear[y, x] < 6:
            continue
        s = d[y - 30:y + 30, x - 30:x + 30]
        stamps.append(s)
        ref.append(np.nanmean(s[~fs.mask[y - 30:y + 30, x - 30:x + 30]]))
    stamps, ref = np.array(stamps), np.array(ref)
    t = time.process_time()
    masked = stamp_background(stamps, "masked_annulus")
    cpu = time.process_time() - t
    median = stamp_background(stamps, "median")
    off = (masked - ref) / sig
    print(f"{f.split('/')[-1]:28s} masked frac {fs.mask.mean():.2f}  median - ref {np.median((median - ref) / sig):+.3f}  "
          f"masked_annulus - ref {np.median(off):+.3f} (16-84 % {np.percentile(off, 16):+.3f}..{np.percentile(off, 84):+.3f})  "
          f"{cpu / len(stamps) * 1e3:.2f} ms/stamp")
