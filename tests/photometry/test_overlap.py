"""Exact pixel/ellipse overlap against photutils' exact apertures."""

from __future__ import annotations

import numpy as np
import pytest
from photutils.aperture import EllipticalAperture, aperture_photometry

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry.overlap import ellipse_pixel_overlap


def test_sums_match_photutils_exact_on_random_apertures() -> None:
    rng = np.random.default_rng(42)
    shape = (41, 53)
    image = rng.normal(5.0, 1.0, shape)
    n = 300
    # Centres anywhere, including outside: many apertures are cut by the edges.
    x, y = rng.uniform(-6, 58, n), rng.uniform(-6, 46, n)
    a = np.exp(rng.uniform(np.log(0.2), np.log(25), n))
    b = a * rng.uniform(0.05, 1.0, n)
    pa = rng.uniform(-360, 360, n)
    ours = (ellipse_pixel_overlap(shape, x, y, a, b, pa) * image).sum(axis=(1, 2))
    compared = 0
    for i in range(n):
        aperture = EllipticalAperture((x[i], y[i]), a[i], b[i], theta=np.deg2rad(pa[i]))
        reference = float(aperture_photometry(image, aperture, method="exact")["aperture_sum"][0])
        if not np.isfinite(reference) or abs(reference) < 1e-9:  # photutils: NaN when fully off the image
            assert abs(ours[i]) < 1e-9
            continue
        compared += 1
        assert ours[i] == pytest.approx(reference, rel=1e-6), (x[i], y[i], a[i], b[i], pa[i])
    assert compared > 200


def test_do_photometry_matches_for_edge_cut_apertures() -> None:
    image = np.ones((30, 30))
    positions = [(0.0, 0.0), (29.3, 15.2), (15.0, -2.0), (3.7, 28.9)]
    aperture = EllipticalAperture(positions, 6.0, 2.5, theta=0.7)
    reference, _ = aperture.do_photometry(image, method="exact")
    x, y = np.array(positions).T
    ours = ellipse_pixel_overlap(image.shape, x, y, 6.0, 2.5, np.rad2deg(0.7)).sum(axis=(1, 2))
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_interior_area_is_pi_a_b_and_fractions_in_unit_interval() -> None:
    w = ellipse_pixel_overlap((64, 64), [31.3, 30.0], [32.8, 30.5], [10.0, 0.3], [4.0, 0.2], [33.0, 120.0])
    np.testing.assert_allclose(w.sum(axis=(1, 2)), np.pi * np.array([40.0, 0.06]), rtol=1e-12)
    assert w.min() >= 0.0 and w.max() <= 1.0


def test_rotation_by_180_degrees_and_swapped_axes_give_the_same_weights() -> None:
    w1 = ellipse_pixel_overlap((20, 20), 9.6, 10.2, 5.0, 2.0, 30.0)
    w2 = ellipse_pixel_overlap((20, 20), 9.6, 10.2, 5.0, 2.0, 210.0)
    w3 = ellipse_pixel_overlap((20, 20), 9.6, 10.2, 2.0, 5.0, 120.0)
    np.testing.assert_allclose(w1, w2, atol=1e-12)
    np.testing.assert_allclose(w1, w3, atol=1e-12)


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (1.0, -1.0), (np.nan, 1.0)])
def test_rejects_invalid_axes(a: float, b: float) -> None:
    with pytest.raises(LumosValueError, match="semi-axes"):
        ellipse_pixel_overlap((10, 10), 5.0, 5.0, a, b, 0.0)
