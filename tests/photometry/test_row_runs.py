"""Dilation by horizontal runs on packed rows: exactly the dilation of a bool array."""

import numpy as np
import pytest
from scipy import ndimage

from lumos_ops.photometry.background import _grow, grow_octagon
from lumos_ops.photometry.row_runs import dilate_by_runs, pack_rows, unpack_rows


@pytest.mark.parametrize("shape", [(1, 1), (3, 64), (7, 65), (40, 130), (129, 200)])
def test_packed_rows_round_trip(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(0).random(shape) < 0.3
    words = pack_rows(mask)
    assert words.dtype == np.uint64 and words.shape == (shape[0], -(-shape[1] // 64))
    assert np.array_equal(unpack_rows(words, shape[1]), mask)


def _structure(widths: list[int]) -> np.ndarray:
    reach, top = len(widths) - 1, max(max(widths), 0)
    structure = np.zeros((2 * reach + 1, 2 * top + 1), dtype=bool)
    for dy, w in enumerate(widths):
        if w >= 0:
            structure[reach + dy, top - w : top + w + 1] = True
            structure[reach - dy, top - w : top + w + 1] = True
    return structure


def test_dilation_is_binary_dilation_with_zeros_beyond_the_edges() -> None:
    rng = np.random.default_rng(1)
    for _ in range(60):
        shape = (int(rng.integers(1, 90)), int(rng.integers(1, 300)))
        mask = rng.random(shape) < rng.uniform(0.001, 0.05)
        widths = [int(w) for w in rng.integers(-1, 80, int(rng.integers(1, 12)))]
        widths[0] = max(widths[0], 0)
        expected = ndimage.binary_dilation(mask, structure=_structure(widths), border_value=0)
        assert np.array_equal(dilate_by_runs(mask, widths), expected), widths


def test_no_run_gives_an_empty_mask() -> None:
    mask = np.ones((5, 70), dtype=bool)
    assert not dilate_by_runs(mask, [-1, -1]).any() and not dilate_by_runs(mask, []).any()


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 8])
def test_grow_octagon_is_the_cutout_octagon(radius: int) -> None:
    """The frame's octagon (packed rows) and the cutouts' (packed planes) are the same dilation."""
    mask = np.random.default_rng(radius).random((70, 150)) < 0.01
    assert np.array_equal(grow_octagon(mask, radius), _grow(mask[None], radius)[0])
