"""Sources detected once per frame and the annulus background that leaves them out."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.cutouts import cut_mask, cut_stamps
from lumos_ops.photometry.background import annulus_background
from lumos_ops.photometry.frame_sources import detect_frame_sources, frame_sources

SHAPE = (512, 640)


def _sky_with_galaxies(seed: int, *, n_gal: int = 60, gradient: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gamma sky (mean 10, rms 1, skewness 1) with exponential galaxies; returns image, x, y."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    image = rng.gamma(4.0, 0.5, SHAPE) + 8.0 + gradient * np.arange(nx)[None, :] / nx
    x, y = rng.uniform(0, nx, n_gal), rng.uniform(0, ny, n_gal)
    yy, xx = np.mgrid[:ny, :nx]
    for xc, yc, peak in zip(x, y, rng.uniform(5.0, 40.0, n_gal)):
        box = (slice(max(int(yc) - 40, 0), int(yc) + 41), slice(max(int(xc) - 40, 0), int(xc) + 41))
        image[box] += peak * np.exp(-np.hypot(xx[box] - xc, yy[box] - yc) / 2.0)
    return image.astype(np.float32), x, y


def test_pure_noise_has_almost_no_detections() -> None:
    rng = np.random.default_rng(3)
    image = (rng.gamma(4.0, 0.5, SHAPE) + 100.0).astype(np.float32)
    sources = detect_frame_sources(image)
    assert sources.detected.mean() < 1e-3
    assert sources.mask.sum() >= sources.detected.sum()


def test_galaxies_are_detected_and_grown() -> None:
    image, x, y = _sky_with_galaxies(1)
    sources = detect_frame_sources(image)
    centres = sources.detected[np.clip(np.round(y).astype(int), 0, SHAPE[0] - 1), np.clip(np.round(x).astype(int), 0, SHAPE[1] - 1)]
    assert centres.mean() > 0.95
    assert sources.mask.sum() > 2 * sources.detected.sum()


def test_nan_pixels_are_never_sources() -> None:
    image, _, _ = _sky_with_galaxies(2)
    image[100:140, :] = np.nan
    sources = detect_frame_sources(image)
    assert not sources.detected[100:140].any()


def test_frame_mask_background_matches_the_cutout_detection_and_the_sky_mean() -> None:
    """The pipeline's frame-wide mask gives the background the cutout detection gives: the sky mean."""
    image, _, _ = _sky_with_galaxies(4, n_gal=80, gradient=1.0)
    rng = np.random.default_rng(5)
    tx, ty = rng.uniform(60, SHAPE[1] - 60, 300), rng.uniform(60, SHAPE[0] - 60, 300)
    stamps = cut_stamps(image, tx, ty, size=94)
    mask = cut_mask(frame_sources(image).mask, stamps.x0, stamps.y0, 94)
    frame = annulus_background(stamps.data, stamps.dx, stamps.dy, source_mask=mask)
    cutout = annulus_background(stamps.data, stamps.dx, stamps.dy)
    sky = 10.0 + 1.0 * tx / SHAPE[1]  # sky mean under each target (rms 1)
    assert abs(np.mean(frame.mean - sky)) < 0.01
    assert abs(np.mean(frame.mean - cutout.mean)) < 0.005
    assert np.mean(frame.n_masked > 0) > 0.5
    plain = annulus_background(stamps.data, stamps.dx, stamps.dy, estimator="clipped_mean")
    assert np.mean(plain.mean - sky) > 0.05  # the wings the mask removes are there


def test_frame_sources_is_kept_for_the_same_array_only() -> None:
    image, _, _ = _sky_with_galaxies(6, n_gal=5)
    first = frame_sources(image)
    assert frame_sources(image) is first
    assert frame_sources(image.copy()) is not first


def test_cut_mask_is_false_beyond_the_image() -> None:
    mask = np.ones((20, 30), dtype=bool)
    windows = cut_mask(mask, np.array([-5, 25, 10]), np.array([-3, 15, 5]), 10)
    assert windows.shape == (3, 10, 10)
    assert not windows[0, :3].any() and not windows[0, :, :5].any() and windows[0, 3:, 5:].all()
    assert windows[1, :5, :5].all() and not windows[1, 5:].any() and not windows[1, :, 5:].any()
    assert windows[2].all()


def test_detection_does_not_depend_on_the_rows_done_at_once(monkeypatch) -> None:
    """The threshold and the kernel normalisation are computed a block of rows at a time: any block
    height gives the same detections, with and without NaN pixels."""
    import lumos_ops.photometry.frame_sources as module

    image, _, _ = _sky_with_galaxies(7, gradient=2.0)
    holed = image.copy()
    holed[200:230, 10:400] = np.nan
    for frame in (image, holed):
        monkeypatch.setattr(module, "_ROWS", SHAPE[0])
        whole = detect_frame_sources(frame)
        for rows in (1, 37, 128):
            monkeypatch.setattr(module, "_ROWS", rows)
            got = detect_frame_sources(frame)
            assert np.array_equal(got.detected, whole.detected) and np.array_equal(got.mask, whole.mask)
        assert whole.detected.sum() > 100


def test_block_median_and_mad_are_those_of_each_block() -> None:
    """Equal blocks (a reshape) and unequal ones (the last block takes the rest), with NaN pixels."""
    from lumos_ops.photometry.frame_sources import _block_index, _block_median_mad

    rng = np.random.default_rng(8)
    for shape in ((64, 96), (70, 101)):
        values = rng.normal(0.0, 1.0, shape).astype(np.float32)
        values[rng.random(shape) < 0.05] = np.nan
        median, mad = _block_median_mad(values, 16)
        rows, _, by, _ = _block_index(shape[0], 16)
        cols, _, bx, _ = _block_index(shape[1], 16)
        for i in range(by):
            for j in range(bx):
                block = values[np.ix_(rows == i, cols == j)]
                block = block[np.isfinite(block)].astype(np.float64)
                assert median[i, j] == pytest.approx(np.median(block), abs=1e-6)
                assert mad[i, j] == pytest.approx(np.median(np.abs(block - np.median(block))), abs=1e-6)


def test_local_level_follows_a_gradient_and_leaves_masked_pixels_out() -> None:
    from lumos_ops.photometry.frame_sources import local_level

    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[:512, :384]
    sky = 5.0 + 0.01 * xx - 0.004 * yy
    data = sky + rng.normal(0.0, 0.5, sky.shape)
    mask = np.zeros(sky.shape, dtype=bool)
    mask[100:140, 100:140] = True
    data[mask] += 50.0  # a source the level must not see
    level = local_level(data, mask, box=64)
    inner = (slice(32, -32), slice(32, -32))  # between the outer block centres the interpolation is linear
    assert np.abs(level[inner] - sky[inner]).max() < 0.1
    assert level.dtype == np.float32 and level.shape == data.shape


def test_without_groups_drops_the_groups_at_the_positions_and_grows_the_rest_again() -> None:
    from lumos_ops.photometry.background import DETECT_GROW_PX, grow_octagon
    from lumos_ops.photometry.frame_sources import FrameSources, without_groups

    detected = np.zeros((80, 80), dtype=bool)
    detected[10:14, 10:14] = True  # a target's group
    detected[14:16, 14:16] = True  # touching it diagonally: the same 8-connected group
    detected[40:44, 40:44] = True  # another source's
    detected[60:63, 20:23] = True  # a group one pixel beside the second position: reached by its 3 x 3
    sources = FrameSources(detected=detected, mask=grow_octagon(detected, DETECT_GROW_PX))
    kept = without_groups(sources, np.array([11.0, 23.4, np.nan]), np.array([12.0, 61.2, 5.0]))
    assert not kept.detected[10:16, 10:16].any() and not kept.detected[60:63, 20:23].any()
    assert kept.detected[40:44, 40:44].all() and kept.detected.sum() == 16
    np.testing.assert_array_equal(kept.mask, grow_octagon(kept.detected, DETECT_GROW_PX))
    assert without_groups(sources, np.array([70.0]), np.array([5.0])) is sources  # nothing there
