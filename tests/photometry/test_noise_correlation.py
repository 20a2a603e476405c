"""The sky noise's spatial correlation and the covariance of weighted sums under it
(lumos_ops.photometry.noise_correlation)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from lumos_ops.photometry.noise_correlation import NOISE_LAG, noise_correlation, weight_covariances


def test_white_noise_has_no_correlation_and_smoothed_noise_its_kernels() -> None:
    rng = np.random.default_rng(1)
    lag = NOISE_LAG
    white = noise_correlation(rng.normal(100.0, 3.0, (700, 900)))
    assert white.shape == (2 * lag + 1, 2 * lag + 1) and white[lag, lag] == 1.0
    off = np.delete(white.ravel(), white.size // 2)
    assert np.abs(off).max() < 0.01
    # noise smoothed by a Gaussian of 2 px: the correlation is the Gaussian of 2 sqrt(2) px
    smooth = ndimage.gaussian_filter(rng.standard_normal((1400, 1400)), 2.0, mode="wrap")
    measured = noise_correlation(smooth + np.linspace(0.0, 5.0, 1400)[None, :])  # a sky gradient is not noise
    r2 = np.add.outer(np.arange(-lag, lag + 1) ** 2, np.arange(-lag, lag + 1) ** 2)
    expected = np.exp(-r2 / (4.0 * 2.0**2))
    np.testing.assert_allclose(measured[lag - 6 : lag + 7, lag - 6 : lag + 7], expected[lag - 6 : lag + 7, lag - 6 : lag + 7],
                               atol=0.02)


def test_sources_are_left_out_and_a_frame_without_noise_is_white() -> None:
    rng = np.random.default_rng(2)
    image = rng.standard_normal((600, 600))
    yy, xx = np.mgrid[:600, :600]
    blobs = np.zeros_like(image)
    for x, y in rng.uniform(20, 580, (80, 2)):
        blobs += 200.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    lag = NOISE_LAG
    unmasked = noise_correlation(image + blobs)
    masked = noise_correlation(image + blobs, blobs > 0.05)
    assert unmasked[lag, lag + 2] > 0.3  # the sources' light reads as correlated noise
    assert abs(masked[lag, lag + 2]) < 0.01
    flat = noise_correlation(np.full((300, 300), 7.0))
    assert flat[lag, lag] == 1.0 and np.count_nonzero(flat) == 1
    assert np.count_nonzero(noise_correlation(np.full((20, 20), np.nan))) == 1


def test_weight_covariances_are_the_double_sum_over_the_image() -> None:
    rng = np.random.default_rng(0)
    size, lag = 20, 6
    weights = rng.normal(size=(4, size, size))
    x0, y0 = np.array([10, 17, 3, 40]), np.array([5, 9, 20, 5])
    kernel = rng.normal(size=(2 * lag + 1, 2 * lag + 1))
    kernel = kernel + kernel[::-1, ::-1]
    pairs = np.array([[0, 1], [1, 0], [0, 2], [1, 2], [0, 3], [2, 3]])
    diagonal, off = weight_covariances(weights, x0, y0, pairs, kernel, chunk=3)

    def on_image(i: int) -> np.ndarray:
        canvas = np.zeros((80, 90))
        canvas[y0[i] + 10 : y0[i] + 10 + size, x0[i] + 10 : x0[i] + 10 + size] = weights[i]
        return canvas

    placed = [on_image(i) for i in range(4)]
    smoothed = [fftconvolve(c, kernel, mode="same") for c in placed]
    # convolved in single precision
    np.testing.assert_allclose(diagonal, [(placed[i] * smoothed[i]).sum() for i in range(4)], rtol=1e-5)
    np.testing.assert_allclose(off, [(placed[i] * smoothed[j]).sum() for i, j in pairs], rtol=1e-5, atol=1e-3)
    assert np.isclose(off[0], off[1], rtol=1e-5)  # the covariance is symmetric
    assert off[-2] == off[-1] == 0.0  # stamps 30 px apart with 6 px lags share nothing
