"""The light of detected sources beyond their detections: the frame's profile and its subtraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from scipy import ndimage

import lumos_ops.target_context as target_context
from lumos_ops.cutouts import cut_stamps
from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import get_method, prepare_targets
from lumos_ops.photometry.frame_sources import detect_frame_sources
from lumos_ops.photometry.wing_light import (
    MIN_PIXELS,
    WingProfile,
    _decreasing_fit,
    measure_wing_profile,
    wing_light,
)


def test_decreasing_fit_pools_adjacent_violators() -> None:
    np.testing.assert_allclose(_decreasing_fit(np.array([3.0, 2.0, 1.0]), np.ones(3)), [3.0, 2.0, 1.0])
    # 1 then 3 violate; pooled with weights 1 and 3: (1 + 9) / 4
    np.testing.assert_allclose(_decreasing_fit(np.array([4.0, 1.0, 3.0, 0.0]), np.array([1.0, 1.0, 3.0, 1.0])),
                               [4.0, 2.5, 2.5, 0.0])
    rng = np.random.default_rng(0)
    fitted = _decreasing_fit(rng.normal(size=50), rng.uniform(1, 2, 50))
    assert np.all(np.diff(fitted) <= 1e-12)


def test_profile_of_pure_noise_is_flat() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(10.0, 1.0, (600, 600))
    detected = np.zeros(data.shape, dtype=bool)
    detected[rng.integers(0, 600, 300), rng.integers(0, 600, 300)] = True
    detected = ndimage.binary_dilation(detected, iterations=2)  # detections that hold no light
    profile = measure_wing_profile(data, detected)
    assert profile.excess[-1] == 0.0 and np.all(np.diff(profile.excess) <= 0)
    assert np.all(profile.counts >= MIN_PIXELS)
    assert profile.excess.max() < 0.05  # pixel sigma 1


def test_profile_follows_the_wings_beyond_the_detections() -> None:
    rng = np.random.default_rng(2)
    size, h = 700, 4.0
    yy, xx = np.mgrid[:size, :size]
    wings = np.zeros((size, size))
    for a, b in rng.uniform(0, size, (80, 2)):
        wings += 20.0 * np.exp(-np.hypot(xx - a, yy - b) / h)
    data = (wings + rng.normal(0.0, 0.25, wings.shape)).astype(np.float32)
    detected = detect_frame_sources(data).detected
    profile = measure_wing_profile(data, detected)
    distance = ndimage.distance_transform_cdt(~detected, metric="chessboard")  # the profile's distance
    far = wings[distance >= profile.edges[-1]].mean()
    for lo, hi, excess in zip(profile.edges, np.append(profile.edges[1:], np.inf), profile.excess):
        true = wings[(distance >= lo) & (distance < hi)].mean() - far
        assert excess == pytest.approx(true, abs=0.02)  # pixel sigma 0.25
    assert profile.excess[0] > 0.1  # the wings next to a detection are strong here


def test_a_sky_gradient_is_not_light_near_the_detections() -> None:
    rng = np.random.default_rng(6)
    size = 640
    yy, xx = np.mgrid[:size, :size]
    data = rng.normal(0.0, 1.0, (size, size)) + 2.0 * xx / size  # scattered light: +2 sigma across
    detected = np.zeros(data.shape, dtype=bool)
    detected[rng.integers(0, size, 60), rng.integers(size // 2, size, 60)] = True  # all in the bright half
    detected = ndimage.binary_dilation(detected, iterations=2)
    assert measure_wing_profile(data, detected).excess.max() < 0.1  # 0.96 without the level


def test_a_frame_without_detections_has_no_excess() -> None:
    profile = measure_wing_profile(np.ones((100, 100)), np.zeros((100, 100), dtype=bool))
    assert profile.excess.tolist() == [0.0]
    np.testing.assert_array_equal(profile.at(np.array([0.0, 3.0, 100.0])), 0.0)


def test_wing_light_follows_other_sources_not_the_targets_own() -> None:
    profile = WingProfile(edges=np.array([1.0, 3.0, 6.0]), excess=np.array([0.5, 0.2, 0.0]), counts=np.full(3, 9999))
    detected = np.zeros((60, 60), dtype=bool)
    detected[18:23, 18:23] = True  # the first target's own detection, about its centre (20, 20)
    detected[14:17, 47:50] = True  # another source, in the second cutout only
    x0, y0 = np.array([10, 30]), np.array([10, 10])  # cutouts 21 px about (20, 20) and (40, 20)
    light = wing_light(profile, detected, x0, y0, 21)
    assert not light[0].any()  # only its own detection in the first cutout
    other = light[1]
    assert other[4:7, 17:20].sum() == 0.0  # on the other source's pixels (left out by every method)
    assert other[7, 18] == pytest.approx(0.5)  # 1 px below it
    assert other[9, 18] == pytest.approx(0.2)  # 3 px below
    assert other[10, 10] == 0.0  # the target, 7 px away (chessboard)
    assert light.dtype == np.float32


def _frame(path, *, n_others: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Faint exponential discs at least 12 px from every detection, among ``n_others`` bright
    exponential sources (scale 4 px) whose wings reach far beyond their detections."""
    rng = np.random.default_rng(seed)
    size, sky, exptime = 800, 6.0, 100.0
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), sky)
    for a, b in rng.uniform(0, size, (n_others, 2)):
        x0, y0 = int(max(a - 60, 0)), int(max(b - 60, 0))
        window = (slice(y0, int(min(b + 60, size))), slice(x0, int(min(a + 60, size))))
        image[window] += 2000.0 / (2 * np.pi * 16.0) * np.exp(-np.hypot(xx[window] - a, yy[window] - b) / 4.0)
    distance = ndimage.distance_transform_edt(~detect_frame_sources(image.astype(np.float32)).detected)
    gx, gy = (g.ravel().astype(float) for g in np.meshgrid(np.arange(50, size - 50, 40), np.arange(50, size - 50, 40)))
    clear = distance[gy.astype(int), gx.astype(int)] >= 12
    x, y = gx[clear] + rng.uniform(-0.5, 0.5, clear.sum()), gy[clear] + rng.uniform(-0.5, 0.5, clear.sum())
    flux = rng.uniform(4.0, 8.0, x.size)  # e-/s: SNR 2-4
    for a, b, f in zip(x, y, flux):
        window = (slice(int(b) - 30, int(b) + 31), slice(int(a) - 30, int(a) + 31))
        disc = np.exp(-np.hypot(xx[window] - a, yy[window] - b) / 1.8)
        image[window] += f * disc / disc.sum()
    header = fits.Header({"EXPTIME": exptime, "FILTER": "NB685", "PSFFWHM": 0.9, "GAIN": 1.0, "EPOCH": 1})
    fits.PrimaryHDU(rng.poisson(image * exptime).astype(np.float32), header).writeto(path)
    catalog = pd.DataFrame({"ref_id": np.arange(x.size), "x": x, "y": y, "r50": 0.8, "sersic_n": 1.0, "q": 1.0,
                            "pa": 0.0, "i_auto": 21.0})
    return catalog, flux


def _median_pulls(path, catalog: pd.DataFrame, flux: np.ndarray) -> dict[str, float]:
    ctx = prepare_targets(read_exposure(path), catalog, neighbours=False)
    pulls = {}
    for name in ("aperture", "optimal"):
        frame = get_method(name).measure(ctx)
        pulls[name] = float(np.median((frame["flux"].to_numpy() - flux) / frame["flux_err"].to_numpy()))
    return pulls


def test_targets_clear_of_detections_read_as_without_the_other_sources(tmp_path, monkeypatch) -> None:
    alone = _median_pulls(tmp_path / "alone.fits", *_frame(tmp_path / "alone.fits", n_others=0, seed=3))
    catalog, flux = _frame(tmp_path / "crowd.fits", n_others=250, seed=3)
    corrected = _median_pulls(tmp_path / "crowd.fits", catalog, flux)
    monkeypatch.setattr(target_context.TargetContext, "other_source_light",
                        lambda self, x0, y0, size, **_: np.zeros((len(x0), size, size), dtype=np.float32))
    uncorrected = _median_pulls(tmp_path / "crowd.fits", catalog, flux)
    for name in ("aperture", "optimal"):
        before, after = uncorrected[name] - alone[name], corrected[name] - alone[name]
        assert before < -0.3, (name, before)  # the annuli hold the others' wings; the targets do not
        assert abs(after) < 0.6 * abs(before), (name, before, after)


def test_stamps_have_the_light_subtracted_unless_other_sources_are_kept(tmp_path) -> None:
    catalog, _ = _frame(tmp_path / "crowd.fits", n_others=250, seed=4)
    exposure = read_exposure(tmp_path / "crowd.fits")
    raw = cut_stamps(exposure.data, *_positions(exposure, catalog), size=60).data
    kept = prepare_targets(exposure, catalog, neighbours=False, mask_other_sources=False)
    np.testing.assert_array_equal(kept.stamps.data, raw)
    left_out = prepare_targets(exposure, catalog, neighbours=False)
    from lumos_ops.photometry.inputs import wide_stamp_size

    wide = wide_stamp_size(60)
    off = wide // 2 - 30
    stamps = left_out.stamps
    light = left_out.other_light
    np.testing.assert_array_equal(light, left_out.other_source_light(stamps.x0 - off, stamps.y0 - off, wide))
    assert light.max() > 0
    np.testing.assert_allclose(stamps.data, raw - light[:, off : off + 60, off : off + 60], atol=1e-6)
    wide_raw = cut_stamps(exposure.data, *_positions(exposure, catalog), size=wide).data
    np.testing.assert_allclose(left_out.photometry_inputs.data, wide_raw - light, atol=1e-6)


def _positions(exposure, catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from lumos_ops.io.catalog import target_pixels, validate_catalog

    return target_pixels(validate_catalog(catalog, source=exposure.path), exposure.wcs, source=exposure.path)


def test_a_saturated_target_next_to_another_source_stays_flagged(tmp_path, monkeypatch) -> None:
    import lumos_ops.photometry.wing_light as wing_module
    from lumos_ops.flags import Flag

    rng = np.random.default_rng(5)
    size, exptime, saturate = 200, 100.0, 30000.0
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), 6.0)
    image += 5000.0 * np.exp(-np.hypot(xx - 100, yy - 100) ** 2 / (2 * 1.5**2))  # the target, saturated
    image += 100.0 * np.exp(-np.hypot(xx - 130, yy - 100) ** 2 / (2 * 1.5**2))  # another star
    counts = np.minimum(rng.poisson(image * exptime), saturate).astype(np.float32)
    header = fits.Header({"EXPTIME": exptime, "FILTER": "NB685", "PSFFWHM": 0.9, "GAIN": 1.0, "EPOCH": 1,
                          "SATURATE": saturate})
    fits.PrimaryHDU(counts, header).writeto(tmp_path / "star.fits")
    everywhere = WingProfile(edges=np.array([1.0]), excess=np.array([1.0]), counts=np.array([MIN_PIXELS]))
    monkeypatch.setattr(wing_module, "frame_wing_profile", lambda data: everywhere)
    catalog = pd.DataFrame({"ref_id": [0], "x": [100.0], "y": [100.0], "r50": 0.1, "sersic_n": 1.0, "q": 1.0,
                            "pa": 0.0, "i_auto": 15.0})
    ctx = prepare_targets(read_exposure(tmp_path / "star.fits"), catalog, neighbours=False)
    inputs = ctx.photometry_inputs
    assert ctx.other_light[0, 47, 47] == pytest.approx(1.0)  # the map reaches its core
    assert np.nanmax(inputs.data) == pytest.approx(saturate / exptime)
    flags = get_method("aperture").measure(ctx)["flag"].to_numpy()
    assert flags[0] & Flag.SATURATED
