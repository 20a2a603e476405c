"""Stamp median vs masked mean at clear positions of real frames, in units of the frame's pixel noise."""
import numpy as np
from scipy import ndimage
from lumos_ops.evaluation.injection import read_frame, robust_sigma
from lumos_ops.photometry.frame_sources import frame_sources

rng = np.random.default_rng(0)
for name in ["sep_image.fits", "sdss_g.fits.bz2", "sdss_r.fits.bz2", "sdss_i.fits.bz2"]:
    data = read_frame(f"/work/shared/realdata/{name}").astype(np.float64)
    med, sig = robust_sigma(data)
    fs = frame_sources(data.astype(np.float32))
    clear = ndimage.distance_transform_edt(~fs.detected)
    ny, nx = data.shape
    d_med, d_mean, d_allmean = [], [], []
    sky = data[~fs.mask]
    sky_mean = sky.mean()
    for _ in range(3000):
        y, x = rng.integers(30, ny - 30), rng.integers(30, nx - 30)
        if clear[y, x] < 6:
            continue
        st = data[y - 30:y + 30, x - 30:x + 30]
        m = fs.mask[y - 30:y + 30, x - 30:x + 30]
        d_med.append(np.median(st))
        d_mean.append(st[~m].mean())
        if len(d_med) >= 300:
            break
    d_med, d_mean = np.array(d_med), np.array(d_mean)
    print(f"{name:16s} n={len(d_med)} sigma={sig:.4g} mask frac={fs.mask.mean():.2f} "
          f"stamp median - masked mean = {np.median(d_med - d_mean) / sig:+.3f} sigma (16-84%: "
          f"{np.percentile((d_med - d_mean) / sig, 16):+.3f}..{np.percentile((d_med - d_mean) / sig, 84):+.3f}); "
          f"global sky mean - median = {(sky_mean - np.median(sky)) / sig:+.3f} sigma")
