"""Background from the 30-45 px annulus: source-masked clipped mean (default), clipped mean, median clip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry import background
from lumos_ops.photometry.background import annulus_background, annulus_pixel_count, grow_octagon, white_smoothing_gain


def test_mean_and_variance_of_a_flat_noisy_sky_with_a_bright_star() -> None:
    rng = np.random.default_rng(1)
    cutouts = rng.normal(6.0, 0.3, (40, 96, 96))
    cutouts[:, 48 + 38, 48 - 2 : 48 + 3] = 500.0  # a star in the annulus, clipped away
    bg = annulus_background(cutouts, rng.uniform(-0.5, 0.5, 40), rng.uniform(-0.5, 0.5, 40))
    assert np.abs(bg.mean - 6.0).max() < 5 * 0.3 / np.sqrt(3000)
    rms = np.sqrt(bg.variance)
    assert np.median(rms) == pytest.approx(0.3, rel=0.01)
    np.testing.assert_allclose(rms, 0.3, rtol=0.06)
    assert (np.abs(bg.n_total - annulus_pixel_count()) < 40).all()
    assert not bg.incomplete.any()
    np.testing.assert_allclose(bg.mean_variance, bg.variance / bg.n_used)


def test_nan_pixels_are_ignored_and_half_missing_annulus_is_incomplete() -> None:
    cutouts = np.full((2, 96, 96), 3.0)
    cutouts[0, :, :20] = np.nan  # a slice of the annulus off the CCD
    cutouts[1, :, :49] = np.nan  # more than half of it
    bg = annulus_background(cutouts, np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(bg.mean, 3.0)
    assert bg.incomplete.tolist() == [False, True]


def test_no_usable_pixel_gives_nan() -> None:
    bg = annulus_background(np.full((1, 96, 96), np.nan), np.zeros(1), np.zeros(1))
    assert np.isnan(bg.mean[0]) and bg.n_used[0] == 0 and bg.incomplete[0]


@pytest.mark.parametrize("estimator", ["masked_mean", "clipped_mean", "median_clip"])
def test_no_cutout_gives_empty_estimates(estimator: str) -> None:
    bg = annulus_background(np.zeros((0, 60, 60)), np.zeros(0), np.zeros(0), r_in=15.0, r_out=29.0, estimator=estimator)
    assert bg.mean.shape == bg.variance.shape == bg.n_used.shape == bg.n_masked.shape == (0,)


def test_small_cutouts_see_part_of_the_annulus() -> None:
    bg = annulus_background(np.ones((1, 60, 60)), np.zeros(1), np.zeros(1))
    assert 0 < bg.n_used[0] < 0.5 * bg.n_total[0] and bg.incomplete[0]
    assert bg.mean[0] == pytest.approx(1.0)


N_ANNULI = 100
SIZE = 94


def _offsets(rng: np.random.Generator, n: int = N_ANNULI) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)


def _standard_error(bg_mean: np.ndarray) -> float:
    """Standard error of the average of ``bg_mean`` over independent annuli."""
    return float(np.std(bg_mean, ddof=1) / np.sqrt(bg_mean.size))


def _skewed_sky_with_outliers(rng: np.random.Generator, *, mean: float, rms: float, shape: float) -> np.ndarray:
    """Gamma-distributed sky (skewness 2/sqrt(shape)) of known mean and rms, plus cosmic rays and stars."""
    sky = mean + rms * (rng.gamma(shape, 1.0, (N_ANNULI, SIZE, SIZE)) - shape) / np.sqrt(shape)
    centre = SIZE // 2
    for i in range(N_ANNULI):
        angle = rng.uniform(0, 2 * np.pi, 6)
        radius = rng.uniform(31, 44, 6)
        rows = np.round(centre + radius * np.sin(angle)).astype(int)
        cols = np.round(centre + radius * np.cos(angle)).astype(int)
        sky[i, rows[:4], cols[:4]] += rms * rng.uniform(50, 500, 4)  # cosmic rays
        for r, c in zip(rows[4:], cols[4:]):
            sky[i, r - 1 : r + 2, c - 1 : c + 2] += 100 * rms  # compact stars
    return sky


@pytest.mark.parametrize("shape", [9.0, 4.0])
def test_skewed_sky_mean_is_unbiased_where_the_median_clip_is_biased_low(shape: float) -> None:
    rng = np.random.default_rng(7)
    mean, rms = 6.0, 0.3
    cutouts = _skewed_sky_with_outliers(rng, mean=mean, rms=rms, shape=shape)
    dx, dy = _offsets(rng)
    new = annulus_background(cutouts, dx, dy)
    clip = annulus_background(cutouts, dx, dy, estimator="clipped_mean")
    old = annulus_background(cutouts, dx, dy, estimator="median_clip")
    se = _standard_error(new.mean)
    assert se < 0.003 * rms
    assert abs(new.mean.mean() - mean) < 4 * se
    assert abs(clip.mean.mean() - mean) < 4 * _standard_error(clip.mean)
    # Edgeworth: -0.044 rms per unit skewness, more once the clip shrinks (-0.04 and -0.07 rms here).
    skewness = 2 / np.sqrt(shape)
    assert old.mean.mean() - mean < -0.03 * skewness * rms
    assert old.mean.mean() - mean < -10 * _standard_error(old.mean)
    # The noise is the standard deviation of the sky (the outliers do not inflate it).
    assert np.median(np.sqrt(new.variance)) == pytest.approx(rms, rel=0.02)
    assert not new.incomplete.any()


def test_faint_wings_of_a_neighbour_are_masked() -> None:
    rng = np.random.default_rng(3)
    mean, rms = 10.0, 1.0
    cutouts = rng.normal(mean, rms, (N_ANNULI, SIZE, SIZE))
    dx, dy = _offsets(rng)
    yy, xx = np.indices((SIZE, SIZE)) - SIZE // 2
    angle = rng.uniform(0, 2 * np.pi, N_ANNULI)
    for i in range(N_ANNULI):
        # An exponential galaxy 38 px away: 30 rms peak, 2 px scale, 750 rms of light, 47 % of it
        # in the wing below 5 rms that a clip keeps; less than 1 % lies beyond the grown mask.
        r = np.hypot(xx - 38 * np.cos(angle[i]), yy - 38 * np.sin(angle[i]))
        cutouts[i] += 30 * rms * np.exp(-r / 2.0)
    new = annulus_background(cutouts, dx, dy)
    se = _standard_error(new.mean)
    assert abs(new.mean.mean() - mean) < 4 * se
    assert abs(new.mean.mean() - mean) < 0.005 * rms
    assert (new.n_masked > 100).all() and not new.incomplete.any()
    for estimator in ("clipped_mean", "median_clip"):
        assert annulus_background(cutouts, dx, dy, estimator=estimator).mean.mean() - mean > 0.05 * rms


@pytest.mark.parametrize("estimator", ["masked_mean", "clipped_mean", "median_clip"])
def test_gaussian_sky_mean_and_variance(estimator: str) -> None:
    rng = np.random.default_rng(11)
    cutouts = rng.normal(6.0, 0.3, (N_ANNULI, SIZE, SIZE))
    dx, dy = _offsets(rng)
    bg = annulus_background(cutouts, dx, dy, estimator=estimator)  # type: ignore[arg-type]
    se = _standard_error(bg.mean)
    assert abs(bg.mean.mean() - 6.0) < 3 * se
    # The truncated-normal correction matches the clip level (3 or 5 sigma): no bias of the noise.
    assert np.mean(np.sqrt(bg.variance)) == pytest.approx(0.3, rel=0.003)
    assert bg.n_used.mean() > 0.99 * bg.n_total.mean()


@pytest.mark.parametrize("estimator", ["masked_mean", "clipped_mean", "median_clip"])
def test_nan_pixels_of_a_noisy_sky_are_ignored(estimator: str) -> None:
    rng = np.random.default_rng(5)
    cutouts = rng.normal(6.0, 0.3, (N_ANNULI, SIZE, SIZE))
    cutouts[:, :, :20] = np.nan  # off the CCD
    cutouts[:, 10:30, 40:60] = np.nan  # a masked region
    bg = annulus_background(cutouts, *_offsets(rng), estimator=estimator)  # type: ignore[arg-type]
    assert np.isfinite(bg.mean).all()
    assert abs(bg.mean.mean() - 6.0) < 3 * _standard_error(bg.mean)
    assert np.mean(np.sqrt(bg.variance)) == pytest.approx(0.3, rel=0.005)
    assert (bg.n_used < 0.8 * bg.n_total).all() and not bg.incomplete.any()


def test_annulus_crowded_with_sources_falls_back_to_the_clipped_mean() -> None:
    rng = np.random.default_rng(2)
    cutouts = rng.normal(6.0, 0.3, (1, SIZE, SIZE))
    for row in range(2, SIZE - 2, 12):
        for col in range(2, SIZE - 2, 12):
            cutouts[0, row - 1 : row + 2, col - 1 : col + 2] += 15.0  # stars every 12 px: grown, they cover it all
    bg = annulus_background(cutouts, np.zeros(1), np.zeros(1))
    clip = annulus_background(cutouts, np.zeros(1), np.zeros(1), estimator="clipped_mean")
    assert bg.n_masked[0] == 0 and not bg.incomplete[0]
    assert bg.mean[0] == clip.mean[0] == pytest.approx(6.0, abs=5 * 0.3 / np.sqrt(bg.n_used[0]))


def test_quantised_or_two_valued_pixels_are_all_kept() -> None:
    rows, cols = np.indices((SIZE, SIZE))
    checker = 6.0 + 1e-3 * (-1.0) ** (rows + cols)  # MAD = 0 when one value is the median
    cutouts = np.stack([checker, np.round(checker), np.full((SIZE, SIZE), 3.0)])
    for estimator in ("masked_mean", "clipped_mean"):
        bg = annulus_background(cutouts, np.zeros(3), np.zeros(3), estimator=estimator)  # type: ignore[arg-type]
        np.testing.assert_allclose(bg.mean, [6.0, 6.0, 3.0], rtol=0, atol=1e-4)
        assert (bg.n_used == bg.n_total).all()


@pytest.mark.parametrize("estimator", ["masked_mean", "clipped_mean", "median_clip"])
def test_cutouts_inside_the_inner_radius_have_no_background(estimator: str) -> None:
    bg = annulus_background(np.ones((2, 40, 40)), np.zeros(2), np.zeros(2), estimator=estimator)  # type: ignore[arg-type]
    assert np.isnan(bg.mean).all() and (bg.n_used == 0).all() and bg.incomplete.all()


def test_unknown_estimator_is_refused() -> None:
    with pytest.raises(LumosValueError, match="estimator"):
        annulus_background(np.ones((1, SIZE, SIZE)), np.zeros(1), np.zeros(1), estimator="mode")  # type: ignore[arg-type]


# The per-stamp background of LUMOS models adapted with ``lumos adapt``
# (``stamp_background(cutouts, "masked_annulus")``): trained networks depend on its exact numbers.


def _stamps(n: int, size: int, seed: int) -> np.ndarray:
    """Sky 5 e-/s, white noise 1 e-/s, a target at the centre, 0-4 neighbours, NaN edges and holes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    stamps = 5.0 + rng.normal(0.0, 1.0, (n, size, size))
    for k in range(n):
        for x0, y0, flux, width in [(size / 2, size / 2, rng.uniform(5, 300), 2.0)] + [
            (*rng.uniform(-3, size + 3, 2), rng.uniform(10, 400), rng.uniform(0.8, 4)) for _ in range(rng.integers(0, 5))
        ]:
            stamps[k] += flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * width**2)) / (2 * np.pi * width**2)
        if k % 5 == 1:
            stamps[k, :, : rng.integers(1, size)] = np.nan
        elif k % 5 == 2:
            stamps[k][rng.uniform(size=(size, size)) < 0.2] = np.nan
    return stamps


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 MAD of the finite values, in their dtype (``np.median``)."""
    finite = values[np.isfinite(values)]
    median = np.median(finite)
    return median, background._MAD_TO_SIGMA * np.median(np.abs(finite - median))


def _reference_sources(cutout: np.ndarray, values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The per-cutout source detection of ``annulus_background``, written plainly for one cutout."""
    level, pixel_noise = _robust(values.astype(np.float64))
    data = cutout.astype(np.float32)
    finite = np.isfinite(data)
    excess = np.where(finite, data - np.float32(level), np.float32(0.0))
    smoothed = ndimage.gaussian_filter(excess, 2.0, mode="constant", truncate=3.0)
    weight = ndimage.gaussian_filter(finite.astype(np.float32), 2.0, mode="constant", truncate=3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = np.where(weight >= 0.5, smoothed / weight, np.float32(np.nan))
    sample = (rows % 2 == 0) & (cols % 2 == 0)
    smooth_sample = np.where(np.isfinite(values[sample]), smooth[rows[sample], cols[sample]], np.nan)
    sources = np.zeros(values.shape, dtype=bool)
    for _ in range(2):
        median, noise = _robust(np.where(sources[sample], np.nan, smooth_sample))
        detected = smooth > median + 4.0 * max(float(noise), pixel_noise * white_smoothing_gain())
        labels, _ = ndimage.label(detected)
        area = np.bincount(labels.ravel())
        sources = grow_octagon((labels > 0) & (area[labels] >= 5), 5)[rows, cols]
    return sources


def _reference_background(cutouts: np.ndarray, *, r_in: float, r_out: float) -> tuple[np.ndarray, ...]:
    """``annulus_background(cutouts, 0, 0, r_in=r_in, r_out=r_out)`` ("masked_mean", no source mask),
    one cutout at a time: mean, n_used and n_masked."""
    size = cutouts.shape[-1]
    rows, cols = np.indices((size, size)) - size // 2
    radius = np.hypot(rows, cols)
    annulus = (radius >= r_in) & (radius <= r_out)
    rows, cols = np.nonzero(annulus)
    truncation = np.sqrt(background._truncated_normal_variance(6.0))
    mean, n_used, n_masked = [], [], []
    for cutout in cutouts:
        values = cutout[rows, cols].astype(np.float64)
        finite = np.isfinite(values)
        sources = _reference_sources(cutout, values, rows, cols) & finite
        if (finite & ~sources).sum() < 0.05 * finite.sum():
            sources[:] = False
        sky = np.where(sources, np.nan, cutout[rows, cols])
        centre, scale = _robust(sky)
        centre, scale = float(centre), float(background._MAD_TO_SIGMA * np.median(np.abs(sky[np.isfinite(sky)] - centre)))
        kept = np.isfinite(sky)
        for _ in range(10):
            new = np.isfinite(sky) & (np.abs(sky.astype(np.float64) - centre) <= 6.0 * scale + 16 * np.finfo(float).eps * abs(centre))
            if np.array_equal(new, kept):
                break
            kept = new
            centre, scale = float(np.mean(sky[kept], dtype=np.float64)), float(np.std(sky[kept], ddof=1, dtype=np.float64)) / truncation
        mean.append(np.mean(sky[kept], dtype=np.float64))
        n_used.append(kept.sum())
        n_masked.append(sources.sum())
    return np.array(mean), np.array(n_used), np.array(n_masked)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stamp_background_matches_a_plain_per_stamp_reference(dtype: type) -> None:
    cutouts = _stamps(30, 60, seed=5).astype(dtype)
    bg = annulus_background(cutouts, np.zeros(30), np.zeros(30), r_in=15.0, r_out=29.0)
    mean, n_used, n_masked = _reference_background(cutouts, r_in=15.0, r_out=29.0)
    assert (n_masked > 0).sum() > 10
    np.testing.assert_array_equal(bg.n_masked, n_masked)  # the same source pixels, exactly
    np.testing.assert_array_equal(bg.n_used, n_used)
    np.testing.assert_allclose(bg.mean, mean, rtol=1e-12)  # prefix sums against plain means


PINNED_MEAN = ["0x1.40d05134b5cf5p+2", "0x1.3dfe525eaaaabp+2", "0x1.402cc0b1700bep+2", "0x1.3e4743d982af7p+2", "0x1.3e169f93478d8p+2"]
PINNED_VARIANCE = ["0x1.04c2b5a8c4a68p+0", "0x1.074dc87e129e4p+0", "0x1.f33d3d4a4ceb4p-1", "0x1.d3faaebb5d7afp-1", "0x1.ec9f2c501289ap-1"]
PINNED_N_USED = [1746, 768, 1380, 1144, 1932]
PINNED_N_MASKED = [186, 297, 198, 788, 0]


def test_stamp_background_pinned_values() -> None:
    """Exact numbers of the 60 px stamp background: networks trained on it depend on every bit.

    A change here changes the inputs of the LUMOS models adapted with the masked annulus
    background; it needs a new training, not a new pin.
    """
    cutouts = _stamps(5, 60, seed=3).astype(np.float32)
    bg = annulus_background(cutouts, np.zeros(5), np.zeros(5), r_in=15.0, r_out=29.0)
    assert [float(m).hex() for m in bg.mean] == PINNED_MEAN
    assert [float(v).hex() for v in bg.variance] == PINNED_VARIANCE
    assert bg.n_used.tolist() == PINNED_N_USED
    assert bg.n_masked.tolist() == PINNED_N_MASKED
    assert bg.n_total.tolist() == [1932] * 5


def test_component_areas_are_those_of_labelling_each_plane() -> None:
    rng = np.random.default_rng(4)
    for density in (0.0, 0.05, 0.3, 0.6, 1.0):
        mask = rng.uniform(size=(9, 13, 13)) < density
        mask[3, -1, :] = mask[4, 0, :] = True  # touching rows of neighbouring planes stay apart
        expected = np.concatenate([np.bincount(labels.ravel())[labels[plane]] for labels, plane in
                                   ((ndimage.label(p)[0], p) for p in mask)])
        assert np.array_equal(background._component_areas(mask), expected)


def test_float32_threshold_compares_as_the_float64_one() -> None:
    rng = np.random.default_rng(6)
    threshold = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0, 1, 200).astype(np.float32),
                                [0.0, -0.0, 1e300, -1e300, np.inf, -np.inf, np.nan, 1e-45, -1e-46]])
    below = background._float32_below(threshold)
    assert below.dtype == np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        near = threshold.astype(np.float32)
        x = np.concatenate([rng.normal(0, 1, 500), threshold, np.nextafter(near, np.float32(np.inf)),
                            np.nextafter(near, np.float32(-np.inf))]).astype(np.float32)
    assert np.array_equal(x[:, None] > threshold[None, :], x[:, None] > below[None, :])
