"""large_groups keeps the pixels of ndimage.label's groups of at least min_area pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lumos_ops.photometry.components import large_groups


def _reference(mask: np.ndarray, min_area: int) -> np.ndarray:
    labels, count = ndimage.label(mask)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    area[0] = 0
    return area[labels] >= min_area


@pytest.mark.parametrize("fill", [0.0, 0.02, 0.3, 0.55, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (37, 53), (128, 64)])
def test_large_groups_are_ndimage_labels_groups(fill: float, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(int(fill * 100) + shape[0] * 7 + shape[1])
    mask = rng.random(shape) < fill
    for min_area in (1, 2, 5, 12):
        np.testing.assert_array_equal(large_groups(mask, min_area), _reference(mask, min_area))


def test_spirals_combs_and_diagonals() -> None:
    mask = np.zeros((60, 60), dtype=bool)
    mask[5, 5:55] = mask[5:55, 54] = mask[54, 8:55] = mask[10:55, 8] = mask[10, 8:50] = True  # a spiral
    mask[20:50:2, 20:40] = True  # comb teeth joined by a spine
    mask[20:49, 20] = True
    mask[30:40, 45:55] = np.eye(10, dtype=bool)  # diagonal pixels are not 4-connected
    for min_area in (1, 2, 3, 40, 400):
        np.testing.assert_array_equal(large_groups(mask, min_area), _reference(mask, min_area))
