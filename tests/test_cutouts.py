"""Tests for lumos_ops.cutouts: centring convention, sub-pixel offsets and edge padding."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.cutouts import cut_stamps


def test_centre_convention_and_offsets() -> None:
    image = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)
    stamps = cut_stamps(image, np.array([50.3, 60.6]), np.array([40.0, 20.49]), size=10)
    assert stamps.data.shape == (2, 10, 10)
    assert stamps.data[0, 5, 5] == image[40, 50]
    assert stamps.data[1, 5, 5] == image[20, 61]
    np.testing.assert_allclose(stamps.dx, [0.3, -0.4], atol=1e-12)
    np.testing.assert_allclose(stamps.dy, [0.0, 0.49], atol=1e-12)
    assert (stamps.x0 == [45, 56]).all() and (stamps.y0 == [35, 15]).all()
    assert (stamps.off_chip_fraction == 0).all() and stamps.on_image.all()


def test_edge_targets_are_padded_with_nan_not_dropped() -> None:
    image = np.ones((50, 50), dtype=np.float32)
    stamps = cut_stamps(image, np.array([0.0, 49.0, 200.0]), np.array([0.0, 25.0, 25.0]), size=10)
    assert stamps.off_chip_fraction[0] == pytest.approx(0.75)
    assert np.isnan(stamps.data[0, :5, :]).all() and np.isfinite(stamps.data[0, 5:, 5:]).all()
    assert stamps.off_chip_fraction[1] == pytest.approx(0.4)
    assert stamps.on_image[:2].all() and not stamps.on_image[2]
    assert np.isnan(stamps.data[2]).all()


def test_nan_positions_and_bad_shapes() -> None:
    image = np.ones((20, 20), dtype=np.float32)
    stamps = cut_stamps(image, np.array([np.nan]), np.array([3.0]), size=4)
    assert not stamps.on_image[0] and np.isnan(stamps.data).all()
    with pytest.raises(ValueError, match="2-D"):
        cut_stamps(np.ones(5), np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="same length"):
        cut_stamps(image, np.array([1.0, 2.0]), np.array([1.0]))
