"""Frames that keep one property of a real frame at a time (README.md here, §3).

Writes into OUT_DIR:
- ``shuffled.fits``: the frame's own background pixels (outside ``noise_calibration.source_mask``)
  drawn at random: the same pixel distribution, no spatial structure;
- ``correlated.fits``: Gaussian noise with the frame's measured autocovariance
  (``injection.noise_autocovariance``, 65 x 65 lags): its noise correlation, nothing else;
- ``white_faint.fits``: 2048 x 2048 white noise (sigma 5 counts on 100) plus 20,000 Gaussian blobs
  (FWHM 3.5 px) at random positions with matched-filter SNR log-uniform in 0.5-3: undetected
  point sources and nothing else (its baseline is the white-noise frame of §1).

Usage: ``.venv/bin/python reports/lumos/injection-spacing/diagnostic_frames.py FRAME OUT_DIR``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from lumos_ops.evaluation.injection import noise_autocovariance, read_frame
from lumos_ops.noise_calibration import source_mask


def shuffled(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random draws of the frame's background pixels, in its shape (counts)."""
    values = data[~source_mask(data) & np.isfinite(data)]
    return rng.choice(values, size=data.shape)


def correlated(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum is the Fourier transform of the frame's autocovariance."""
    cov = noise_autocovariance(data)
    ny, nx = data.shape
    half = cov.shape[0] // 2
    lags = np.zeros((ny, nx))
    for i in range(-half, half + 1):
        for j in range(-half, half + 1):
            lags[i % ny, j % nx] = cov[half + i, half + j]
    power = np.clip(np.real(np.fft.fft2(lags)), 0.0, None)
    return np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(ny, nx))) * np.sqrt(power)))


def white_with_blobs(rng: np.random.Generator, *, size: int = 2048, sigma: float = 5.0, n_blobs: int = 20_000,
                     blob_sigma_px: float = 1.5) -> np.ndarray:
    """White noise plus faint Gaussian blobs (counts)."""
    image = rng.normal(100.0, sigma, (size, size))
    x, y = rng.uniform(0, size, n_blobs), rng.uniform(0, size, n_blobs)
    snr = np.exp(rng.uniform(np.log(0.5), np.log(3.0), n_blobs))
    flux = snr * sigma * np.sqrt(4.0 * np.pi * blob_sigma_px**2)  # matched-filter error of a Gaussian
    yy, xx = np.mgrid[-8:9, -8:9]
    for xi, yi, f in zip(x, y, flux):
        ix, iy = int(xi), int(yi)
        blob = f * np.exp(-0.5 * ((xx - (xi - ix)) ** 2 + (yy - (yi - iy)) ** 2) / blob_sigma_px**2)
        blob /= 2.0 * np.pi * blob_sigma_px**2
        y0, y1, x0, x1 = max(iy - 8, 0), min(iy + 9, size), max(ix - 8, 0), min(ix + 9, size)
        image[y0:y1, x0:x1] += blob[y0 - (iy - 8) : y1 - (iy - 8), x0 - (ix - 8) : x1 - (ix - 8)]
    return image


def main(argv: list[str]) -> int:
    frame, out = argv[1], Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    data = read_frame(frame)
    rng = np.random.default_rng(1)
    fits.PrimaryHDU(shuffled(data, rng).astype(np.float32)).writeto(out / "shuffled.fits", overwrite=True)
    fits.PrimaryHDU(correlated(data, np.random.default_rng(2)).astype(np.float32)).writeto(out / "correlated.fits",
                                                                                        overwrite=True)
    blobs = white_with_blobs(np.random.default_rng(8))
    fits.PrimaryHDU(blobs.astype(np.float32)).writeto(out / "white_faint.fits", overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
