"""The vectorised paths of the photometry give the numbers of the straightforward code they replace.

Each test keeps the plain implementation (loops, ``np.median``, scipy's distance transform and
morphology, ``scipy.optimize.minimize``) as the reference and compares on random inputs with ties,
NaN and edge cases: bitwise where the arithmetic is the same, to rounding where it is reordered.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, optimize

from lumos_ops import noise_calibration
from lumos_ops.cutouts import cut_stamps
from lumos_ops.photometry import aperture, background
from lumos_ops.photometry.overlap import ellipse_pixel_overlap
from lumos_ops.photometry.quality import model_footprint


def _median_rows(values: np.ndarray) -> np.ndarray:
    return np.array([np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan for r in values], dtype=values.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_and_mad_from_one_sort(dtype: type) -> None:
    rng = np.random.default_rng(0)
    for trial in range(400):
        n, m = int(rng.integers(1, 5)), int(rng.integers(1, 30))
        kind = trial % 4
        values = [rng.normal(size=(n, m)), rng.integers(0, 4, (n, m)).astype(float), np.full((n, m), 2.5),
                  np.round(rng.exponential(size=(n, m)), 1)][kind].astype(dtype)
        values[rng.random((n, m)) < rng.random()] = np.nan
        centre, mad = background._row_median_and_mad(values)
        assert np.array_equal(centre, background._row_median(values), equal_nan=True)
        assert np.array_equal(mad, background._row_median(np.abs(values - centre[:, None])), equal_nan=True)
        assert np.array_equal(centre, _median_rows(values), equal_nan=True)


def _clip_reference(values: np.ndarray, sigma: float, maxiters: int) -> np.ndarray:
    """The whole-array clipping loop (every row on every pass)."""
    finite = np.isfinite(values)
    centre, scale = background._robust_centre_and_scale(values)
    kept = finite
    truncation = np.sqrt(background._truncated_normal_variance(sigma))
    for _ in range(maxiters):
        limit = sigma * scale + 16.0 * np.finfo(np.float64).eps * np.abs(centre)
        with np.errstate(invalid="ignore"):
            new = finite & (np.abs(values - centre[:, None]) <= limit[:, None])
        if np.array_equal(new, kept):
            break
        kept = new
        centre = np.where(kept.any(axis=1), background._row_mean(values, kept), centre)
        scale = background._row_std(values, kept, centre) / truncation
    return kept


def test_clip_carries_on_only_the_rows_that_change() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(300, 400))
    values[:, :40] += rng.exponential(3.0, size=(300, 40))  # outliers: several passes
    values[rng.random(values.shape) < 0.1] = np.nan
    values[5] = 1.0  # a flat row
    for sigma, maxiters in [(2.0, 10), (3.0, 2), (5.0, 10), (6.0, 1)]:
        assert np.array_equal(background.clipped_mean(values, sigma=sigma, maxiters=maxiters),
                              _clip_reference(values, sigma, maxiters))


def test_grow_matches_square_then_diamond_dilation() -> None:
    rng = np.random.default_rng(2)
    for _ in range(60):
        n, size, radius = int(rng.integers(1, 20)), int(rng.integers(1, 30)), int(rng.integers(0, 9))
        mask = rng.random((n, size, size)) < 0.03
        half = int(round(0.4 * radius))
        expected = mask
        if radius > 0:
            expected = ndimage.maximum_filter(mask, size=(1, 2 * half + 1, 2 * half + 1), mode="constant", cval=False)
            if radius > half:
                expected = ndimage.binary_dilation(expected, structure=background._PLANE_CROSS, iterations=radius - half)
        assert np.array_equal(background._grow(mask, radius), expected)
        flat = np.flatnonzero(mask)
        assert np.array_equal(background._pack_planes(flat, mask.shape), np.packbits(mask, axis=0))


def _robust_sigma_reference(data: np.ndarray) -> tuple[float, float]:
    v = data[np.isfinite(data)].ravel()
    if v.size == 0:
        return float("nan"), float("nan")
    for _ in range(3):
        med = float(np.median(v))
        sig = 1.4826 * float(np.median(np.abs(v - med)))
        if not sig > 0:
            break
        v = v[np.abs(v - med) < 4.0 * sig]
    return float(np.median(v)), 1.4826 * float(np.median(np.abs(v - np.median(v))))


def test_robust_sigma_rows_match_the_clipping_loop() -> None:
    rng = np.random.default_rng(3)
    for trial in range(200):
        m = int(rng.integers(1, 60))
        row = [rng.normal(5, 1, m), rng.standard_t(2, m), rng.integers(0, 3, m).astype(float), np.full(m, 1.5)][trial % 4]
        row[rng.random(m) < 0.2] = np.nan
        if trial % 9 == 0:
            row[0] = np.inf
            row[-1] = -np.inf
        got = noise_calibration.robust_sigma(row)
        assert np.array_equal(got, _robust_sigma_reference(row), equal_nan=True)
    block = rng.normal(5, 1, (37, 50))
    block[:, :7] += 30.0
    median, sigma = noise_calibration._robust_rows(block)
    expected = np.array([_robust_sigma_reference(r) for r in block])
    assert np.array_equal(median, expected[:, 0]) and np.array_equal(sigma, expected[:, 1])


def test_coarse_background_is_bilinear_between_block_medians() -> None:
    rng = np.random.default_rng(4)
    for shape in [(300, 257), (129, 64), (70, 500), (40, 40)]:
        data = rng.normal(5, 1, shape) + np.linspace(0, 3, shape[1])
        data[5:9, 3:30] = np.nan
        ny, nx = shape
        by, bx = max(ny // 64, 1), max(nx // 64, 1)
        ys, xs = np.linspace(0, ny, by + 1).astype(int), np.linspace(0, nx, bx + 1).astype(int)
        grid = np.array([[_robust_sigma_reference(data[ys[i]:ys[i + 1], xs[j]:xs[j + 1]])[0] for j in range(bx)]
                         for i in range(by)])
        got = noise_calibration._coarse_background(data, 64)
        if grid.size == 1:
            assert np.array_equal(got, np.full(shape, grid[0, 0]))
            continue
        iy = np.interp(np.arange(ny), 0.5 * (ys[:-1] + ys[1:]) - 0.5, np.arange(by))
        ix = np.interp(np.arange(nx), 0.5 * (xs[:-1] + xs[1:]) - 0.5, np.arange(bx))
        yy, xx = np.meshgrid(iy, ix, indexing="ij")
        expected = ndimage.map_coordinates(grid, [yy, xx], order=1, mode="nearest")
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_a_plane_is_its_own_coarse_background_when_the_edges_extrapolate() -> None:
    """A sky plane: the block medians are the plane at the block centres, so continued beyond the
    outer centres the coarse sky is the plane everywhere; held there, the edge strips keep a ramp
    of up to half a block's step."""
    yy, xx = np.mgrid[0:300, 0:257].astype(float)
    plane = 1000.0 + 0.5 * xx - 0.3 * yy
    extrapolated = noise_calibration._coarse_background(plane, 64, extrapolate=True)
    np.testing.assert_allclose(extrapolated, plane, rtol=0, atol=1e-9)
    held = noise_calibration._coarse_background(plane, 64)
    assert np.abs(held - plane).max() > 10.0
    assert np.abs(noise_calibration.subtract_sky(plane, extrapolate=True)).max() < 1e-9


@pytest.mark.parametrize("strict", [False, True])
def test_disc_dilation_is_the_distance_transform_threshold(strict: bool) -> None:
    rng = np.random.default_rng(5)
    for radius in [0.0, 0.5, 1.0, 1.5, 2.0, 3.8, 5.0, 7.1, 10.3]:
        mask = rng.random((61, 47)) < 0.01
        mask[0, 5] = mask[-1, -1] = True
        distance = ndimage.distance_transform_edt(~mask)
        expected = distance < radius if strict else distance <= radius
        assert np.array_equal(noise_calibration._dilate_disc(mask, radius, strict=strict), expected), radius


@pytest.mark.parametrize("grid", [None, 0.5, 1.0])
def test_disc_exclusion_matches_the_loop(grid: float | None) -> None:
    """Pixel for pixel the test on every pixel of every disc's box, also for centres and radii on
    whole and half pixels (run ends exactly on the circle)."""
    rng = np.random.default_rng(6)
    ny, nx = 90, 130
    for _ in range(20):
        x, y = rng.uniform(-20, nx + 20, 300), rng.uniform(-20, ny + 20, 300)
        radius = rng.uniform(0.0, 25.0, 300)
        if grid is not None:
            x, y, radius = (np.round(v / grid) * grid for v in (x, y, radius))
        expected = np.ones((ny, nx), dtype=bool)
        for tx, ty, r in zip(x, y, radius):
            y0, y1 = max(int(np.floor(ty - r)), 0), min(int(np.ceil(ty + r)) + 1, ny)
            x0, x1 = max(int(np.floor(tx - r)), 0), min(int(np.ceil(tx + r)) + 1, nx)
            if y1 > y0 and x1 > x0:
                yy, xx = np.ogrid[y0:y1, x0:x1]
                expected[y0:y1, x0:x1] &= (xx - tx) ** 2 + (yy - ty) ** 2 >= r * r
        got = np.ones((ny, nx), dtype=bool)
        noise_calibration._exclude_discs(got, x, y, radius)
        assert np.array_equal(got, expected)
        strided = np.ones((ny, 2 * nx), dtype=bool)[:, ::2]  # not contiguous: written in place all the same
        noise_calibration._exclude_discs(strided, x, y, radius)
        assert np.array_equal(strided, expected)


def test_batched_slope_fits_are_scipy_nelder_mead() -> None:
    rng = np.random.default_rng(7)
    n = 120
    area = np.exp(rng.normal(4.5, 0.6, n))
    log_a = np.log(area / np.exp(np.mean(np.log(area))))
    pull = rng.standard_t(4, n) * np.exp(0.3 * log_a)
    rows = rng.integers(0, n, size=(12, n))
    pulls, logs = np.vstack([pull[None], pull[rows]]), np.vstack([log_a[None], log_a[rows]])
    got = noise_calibration._fit_slopes(pulls, logs)
    for p, la, slope in zip(pulls, logs, got):
        def nll(theta: np.ndarray, p: np.ndarray = p, la: np.ndarray = la) -> float:
            mu, log_s, s = theta
            log_scale = log_s + s * la
            z = (p - mu) * np.exp(-log_scale)
            return float(np.sum(0.5 * 5.0 * np.log1p(z * z / 4.0) + log_scale))

        start = np.array([float(np.median(p)), np.log(max(noise_calibration._sigma68(p), 1e-6)), 0.0])
        fit = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-4, "maxiter": 600})
        assert slope == float(np.clip(fit.x[2], -0.5, 1.0))


def test_ring_light_matches_the_exact_overlap() -> None:
    rng = np.random.default_rng(8)
    n, size = 40, 41
    yy, xx = np.mgrid[:size, :size] - size // 2
    model = np.exp(-(xx**2 + (yy / 0.7) ** 2)[None] / rng.uniform(4, 40, n)[:, None, None])
    model /= model.sum(axis=(1, 2), keepdims=True)
    dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    q, pa = rng.uniform(0.2, 1.0, n), rng.uniform(0, 180, n)
    rotated = aperture._rotated_grid(size, dx, dy, pa)
    _, rho = aperture._pixel_centre_radius(model, dx, dy, q, pa, 0.625, rotated)
    lo, hi = rng.uniform(0.3, 3.0, n), rng.uniform(3.5, 9.0, n)
    ring = aperture._RingLight.whole_box(model, dx, dy, q, pa, lo, hi, rotated, rho)
    every = np.arange(n)
    for radius in [lo, hi, 0.5 * (lo + hi), hi + 2.0, np.full(n, 0.1)]:  # the last two outside the ring
        expected = aperture._enclosed(model, dx, dy, q, pa, radius)
        np.testing.assert_allclose(ring.enclosed(every, radius), expected, rtol=1e-12, atol=1e-15)
    c = size // 2
    a, b = aperture._axes(np.full(n, 4.0), q)
    weights = ellipse_pixel_overlap((size, size), c + dx, c + dy, a, b, pa)
    np.testing.assert_allclose(ring.enclosed(every, np.full(n, 4.0)), np.einsum("nij,nij->n", weights, model),
                               rtol=1e-12, atol=1e-15)


def test_model_footprint_on_the_box_of_the_padded_models() -> None:
    rng = np.random.default_rng(9)
    models = np.zeros((30, 50, 50), dtype=np.float32)
    models[:, 10:40, 12:38] = rng.exponential(size=(30, 30, 26)).astype(np.float32) ** 3
    models[3, 20, 20] = np.nan
    models[4] = 0.0
    for light in (0.5, 0.99, 1.0):
        flat = np.nan_to_num(models.reshape(30, -1), nan=0.0)
        descending = np.sort(flat, axis=1)[:, ::-1].astype(np.float64)
        cum = np.cumsum(descending, axis=1)
        needed = np.maximum(((cum - descending) < light * cum[:, -1:]).sum(axis=1), 1)
        threshold = descending[np.arange(30), needed - 1]
        expected = ((flat >= threshold[:, None].astype(flat.dtype)) & (flat > 0)).reshape(models.shape)
        assert np.array_equal(model_footprint(models, light=light), expected)


def test_stamps_inside_and_across_the_edges_are_the_indexed_cutouts() -> None:
    rng = np.random.default_rng(10)
    for dtype in (np.float32, np.float64):
        image = rng.normal(size=(120, 97)).astype(dtype)
        image[10:20, 30:33] = np.nan
        x = np.r_[rng.uniform(-30, 130, 200), np.nan, 5.0, np.inf]
        y = np.r_[rng.uniform(-30, 150, 200), 3.0, np.nan, 4.0]
        for size in (1, 2, 7, 60, 94, 200):
            stamps = cut_stamps(image, x, y, size=size)
            finite = np.isfinite(x) & np.isfinite(y)
            ix = np.floor(np.where(finite, x, 0.0) + 0.5).astype(np.int64) - size // 2
            iy = np.floor(np.where(finite, y, 0.0) + 0.5).astype(np.int64) - size // 2
            rows, cols = iy[:, None] + np.arange(size), ix[:, None] + np.arange(size)
            ny, nx = image.shape
            data = image[np.clip(rows, 0, ny - 1)[:, :, None], np.clip(cols, 0, nx - 1)[:, None, :]].astype(np.float32)
            inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :] & finite[:, None, None]
            data[~inside] = np.nan
            assert np.array_equal(stamps.data, data, equal_nan=True)
            assert np.array_equal(stamps.off_chip_fraction, 1.0 - inside.mean(axis=(1, 2)))


def test_ellipse_sums_are_the_overlap_weighted_image_sums() -> None:
    rng = np.random.default_rng(11)
    image = rng.normal(5.0, 1.0, (80, 70)).astype(np.float32)  # cutouts are float32, as exposures
    image[30:33, 10:50] = np.nan
    n = 50
    x, y = rng.uniform(-3, 73, n), rng.uniform(-3, 83, n)
    b = rng.uniform(0.3, 6.0, n)
    a = b / rng.uniform(0.2, 1.0, n)
    pa = rng.uniform(0, 180, n)
    sums, areas = aperture.ellipse_sums(image, x, y, a, b, pa)
    weights = ellipse_pixel_overlap(image.shape, x, y, a, b, pa)
    finite = np.isfinite(image)
    expected = np.einsum("nij,ij->n", weights * finite, np.where(finite, image, 0.0).astype(np.float64))
    np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(areas, (weights * finite).sum(axis=(1, 2)), rtol=1e-12, atol=1e-12)


def test_slope_fit_starts_are_the_per_row_median_and_sigma68() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for n in (200, 150, 97, 3, 2, 1):
        for _ in range(6):
            row = np.full(200, np.nan)
            row[:n] = rng.standard_t(4, n) * rng.uniform(0.1, 5.0)
            rows.append(row)
    gappy = np.full(200, np.nan)
    gappy[5:50] = rng.normal(size=45)  # finite values not first: taken alone
    rows.append(gappy)
    pull = np.array(rows)
    expected = [[float(np.median(p[np.isfinite(p)])), np.log(max(noise_calibration._sigma68(p[np.isfinite(p)]), 1e-6)), 0.0]
                for p in pull]
    np.testing.assert_array_equal(noise_calibration._start_points(pull), np.array(expected))


def test_annulus_membership_is_the_hypot_test() -> None:
    rng = np.random.default_rng(12)
    x, y = rng.uniform(-47, 47, (300, 400)), rng.uniform(-47, 47, (300, 400))
    angle = rng.uniform(0, 2 * np.pi, 2000)
    x[:5, :] = (30.0 * np.cos(angle[:400]))[None]  # on the radii, to rounding
    y[:5, :] = (30.0 * np.sin(angle[:400]))[None]
    x[5, :3], y[5, :3] = [30.0, 45.0, 0.0], [0.0, 0.0, 45.0]
    x[6, :400] = np.nextafter(45.0, 50.0)
    y[6, :] = 0.0
    for r_in, r_out in ((30.0, 45.0), (0.0, 12.5), (15.0, 15.0)):
        expected = (np.hypot(x, y) >= r_in) & (np.hypot(x, y) <= r_out)
        np.testing.assert_array_equal(background._within_radii(x, y, r_in, r_out), expected)
