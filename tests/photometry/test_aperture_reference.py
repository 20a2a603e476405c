"""The aperture's fast paths give the numbers of the plain code bit for bit.

* ``_segment_circle_area`` (in-place arithmetic, all edges of all pixels in one call) against the
  textbook formula;
* ``ellipse_pixel_overlap`` against the sum of its four edges taken one call at a time;
* ``_ring_setup`` (the radius solve's guess and ring worked out on sub-boxes) against the same
  quantities on the whole boxes, including targets with negative model pixels, elongated and
  wide ones that do not fit the first sub-box, and offsets beyond the stamp convention.
"""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.photometry import aperture
from lumos_ops.photometry.overlap import _CORNERS, _segment_circle_area, ellipse_pixel_overlap


def _segment_plain(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    dx = bx - ax
    dy = by - ay
    qa = dx * dx + dy * dy
    qb = ax * dx + ay * dy
    qc = ax * ax + ay * ay - 1.0
    disc = qb * qb - qa * qc
    hit = (disc > 0.0) & (qa > 0.0)
    root = np.sqrt(np.where(hit, disc, 0.0))
    safe_qa = np.where(hit, qa, 1.0)
    t1 = np.where(hit, np.clip((-qb - root) / safe_qa, 0.0, 1.0), 0.0)
    t2 = np.where(hit, np.clip((-qb + root) / safe_qa, 0.0, 1.0), 0.0)
    p1x, p1y = ax + t1 * dx, ay + t1 * dy
    p2x, p2y = ax + t2 * dx, ay + t2 * dy
    sector_a = np.arctan2(ax * p1y - ay * p1x, ax * p1x + ay * p1y)
    sector_b = np.arctan2(p2x * by - p2y * bx, p2x * bx + p2y * by)
    triangle = p1x * p2y - p1y * p2x
    return 0.5 * (sector_a + triangle + sector_b)


def _overlap_plain(shape: tuple[int, int], x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray,
                   pa: np.ndarray) -> np.ndarray:
    ny, nx = shape
    theta = np.deg2rad(pa)
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    gx = np.arange(nx, dtype=np.float64)[None, None, :] - x[:, None, None]
    gy = np.arange(ny, dtype=np.float64)[None, :, None] - y[:, None, None]
    c, s = cos_t[:, None, None], sin_t[:, None, None]
    u = (c * gx + s * gy) * (1.0 / a[:, None, None])
    v = (-s * gx + c * gy) * (1.0 / b[:, None, None])
    corner_u = (cos_t[:, None] * _CORNERS[None, :, 0] + sin_t[:, None] * _CORNERS[None, :, 1]) / a[:, None]
    corner_v = (-sin_t[:, None] * _CORNERS[None, :, 0] + cos_t[:, None] * _CORNERS[None, :, 1]) / b[:, None]
    reach = np.sqrt(corner_u**2 + corner_v**2).max(axis=1)[:, None, None]
    radius = np.sqrt(u * u + v * v)
    out = np.where(radius + reach <= 1.0, 1.0, 0.0)
    boundary = np.nonzero((radius + reach > 1.0) & (radius - reach < 1.0))
    k = boundary[0]
    pu = u[boundary][:, None] + corner_u[k]
    pv = v[boundary][:, None] + corner_v[k]
    area = np.zeros(k.size)
    for i in range(4):
        j = (i + 1) % 4
        area += _segment_plain(pu[:, i], pv[:, i], pu[:, j], pv[:, j])
    out[boundary] = np.clip(np.abs(area) * a[k] * b[k], 0.0, 1.0)
    return out


def test_segment_area_is_the_plain_formula_bit_for_bit() -> None:
    rng = np.random.default_rng(21)
    n = 20_000
    for scale in (0.3, 1.0, 1.2, 4.0):
        ax, ay, bx, by = (rng.uniform(-scale, scale, n) for _ in range(4))
        bx[:500], by[:500] = ax[:500], ay[:500]  # degenerate segments
        ax[500:600], ay[500:600] = 0.0, -0.0
        bx[600:700], by[600:700] = 1.0, 0.0  # ends on the circle
        got, expected = _segment_circle_area(ax, ay, bx, by), _segment_plain(ax, ay, bx, by)
        np.testing.assert_array_equal(np.abs(got), np.abs(expected))
        np.testing.assert_array_equal(got[expected != 0], expected[expected != 0])
    block = rng.uniform(-1.5, 1.5, (4, 4, 300))
    np.testing.assert_array_equal(_segment_circle_area(*block), _segment_plain(*block))


def test_overlap_is_the_four_edge_sum_bit_for_bit() -> None:
    rng = np.random.default_rng(22)
    n = 60
    x, y = rng.uniform(10, 30, n), rng.uniform(10, 30, n)
    b = rng.uniform(0.3, 6.0, n)
    a = b / rng.uniform(0.1, 1.0, n)
    pa = rng.uniform(-90, 270, n)
    np.testing.assert_array_equal(ellipse_pixel_overlap((41, 43), x, y, a, b, pa), _overlap_plain((41, 43), x, y, a, b, pa))


def _models(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, ...]:
    """Unit-flux elliptical exponential-ish models with small negative ripples, some very wide."""
    dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    q, pa = rng.uniform(0.08, 1.0, n), rng.uniform(0, 180, n)
    width = np.exp(rng.uniform(np.log(0.7), np.log(9.0), n))
    c = size // 2
    yy, xx = np.mgrid[:size, :size] - c
    gx, gy = xx[None] - dx[:, None, None], yy[None] - dy[:, None, None]
    theta = np.deg2rad(pa)[:, None, None]
    u = np.cos(theta) * gx + np.sin(theta) * gy
    v = -np.sin(theta) * gx + np.cos(theta) * gy
    rho = np.sqrt(q[:, None, None] * u * u + v * v / q[:, None, None])
    model = np.exp(-rho / width[:, None, None] * 1.7)
    model /= model.sum(axis=(1, 2), keepdims=True)
    ripple = rng.normal(0.0, 3e-8, model.shape) * (rng.random(n) < 0.7)[:, None, None]
    return model + ripple, dx, dy, q, pa


def _whole_box(model: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray,
               fraction: float) -> tuple[np.ndarray, aperture._RingLight]:
    size = model.shape[-1]
    rotated = aperture._rotated_grid(size, dx, dy, pa)
    guess, rho = aperture._pixel_centre_radius(model, dx, dy, q, pa, fraction, rotated)
    r_max = 0.5 * size * np.sqrt(2.0) / np.sqrt(q)
    lo, hi = np.maximum(guess - 1.0, aperture._MIN_RADIUS), np.minimum(guess + 1.0, r_max)
    return guess, aperture._RingLight.whole_box(model, dx, dy, q, pa, lo, hi, rotated, rho)


@pytest.mark.parametrize("size", [61, 41, 17, 60, 96])
def test_ring_setup_on_sub_boxes_is_the_whole_box_bit_for_bit(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(size)
    model, dx, dy, q, pa = _models(rng, 150, size)
    if size == 41:
        dx[:5] = rng.uniform(-3.0, 3.0, 5)  # offsets beyond the stamp convention
    seen: list[int] = []
    ring_pixels = aperture._ring_pixels
    monkeypatch.setattr(aperture, "_ring_pixels", lambda sub, *args: seen.append(sub.shape[-1]) or ring_pixels(sub, *args))
    for fraction in (0.625, 0.3, 0.9):
        seen.clear()
        guess, ring = aperture._ring_setup(model, dx, dy, q, pa, fraction)
        expected_guess, expected = _whole_box(model, dx, dy, q, pa, fraction)
        np.testing.assert_array_equal(guess, expected_guess)
        for name in ("r_lo", "r_hi", "inner_light", "rho", "light", "first", "corners"):
            np.testing.assert_array_equal(getattr(ring, name), getattr(expected, name), err_msg=name)
        every = np.arange(model.shape[0])
        for radius in (ring.r_lo, ring.r_hi, 0.5 * (ring.r_lo + ring.r_hi), ring.r_hi + 1.5):
            np.testing.assert_array_equal(ring.enclosed(every, radius), expected.enclosed(every, radius))
        if size in (61, 96):  # both kinds of target: on a sub-box and on the whole box
            assert min(seen) < size and max(seen) == size


def test_aperture_radius_of_wide_elongated_and_rippled_models_encloses_the_fraction() -> None:
    rng = np.random.default_rng(23)
    model, dx, dy, q, pa = _models(rng, 200, 61)
    radius = aperture.aperture_radius(model, dx, dy, q, pa)
    ok = np.isfinite(radius)
    assert ok.mean() > 0.9
    light = aperture.enclosed_light(model[ok], dx[ok], dy[ok], q[ok], pa[ok], radius[ok])
    np.testing.assert_allclose(light, 0.625, atol=1e-5)
