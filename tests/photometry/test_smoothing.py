"""gaussian_smooth is scipy.ndimage.gaussian_filter(mode="constant") bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lumos_ops.photometry.smoothing import gaussian_smooth, gaussian_weights


@pytest.mark.parametrize("shape", [(1, 1), (3, 200), (200, 3), (37, 41), (100, 130), (257, 64)])
@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0, 2.6])
def test_gaussian_smooth_is_scipy_bit_for_bit(shape: tuple[int, int], sigma: float) -> None:
    rng = np.random.default_rng(hash((shape, sigma)) % 2**32)
    image = (rng.normal(0.0, 1.0, shape) * rng.choice([1e-3, 1.0, 1e4], shape)).astype(np.float32)
    image[rng.random(shape) < 0.05] = 0.0
    expected = ndimage.gaussian_filter(image, sigma, mode="constant", truncate=3.0)
    got = gaussian_smooth(image, sigma, truncate=3.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_gaussian_smooth_of_a_frame_and_other_truncations() -> None:
    rng = np.random.default_rng(5)
    image = rng.normal(10.0, 3.0, (300, 520)).astype(np.float32)
    image[100:120, 200:260] += 500.0
    for truncate in (2.0, 3.0, 4.5):
        expected = ndimage.gaussian_filter(image, 2.0, mode="constant", truncate=truncate)
        np.testing.assert_array_equal(gaussian_smooth(image, 2.0, truncate=truncate), expected)


def test_gaussian_weights_are_scipys_kernel() -> None:
    weights = gaussian_weights(2.0, 3.0)
    assert weights.size == 13
    assert weights.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(weights, weights[::-1])


def test_gaussian_smooth_rejects_other_arrays() -> None:
    with pytest.raises(ValueError, match="float32"):
        gaussian_smooth(np.zeros((4, 4)), 1.0)
    with pytest.raises(ValueError, match="2-D"):
        gaussian_smooth(np.zeros((2, 4, 4), np.float32), 1.0)
