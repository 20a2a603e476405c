"""Behaviour of render_galaxies / render_point_sources: conventions, exact cases, validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from lumos_ops.exceptions import LumosValueError
from lumos_ops.render import DEFAULT_MOFFAT_BETA, RenderResult, render_galaxies, render_point_sources

PIXEL = 0.263


def _pixel_integrals(centre: float, sigma: float, size: int) -> np.ndarray:
    """Fraction of a 1-d Gaussian (pixels) falling in each pixel [j - 0.5, j + 0.5]."""
    edges = np.arange(size + 1) - 0.5
    cdf = 0.5 * (1 + scipy.special.erf((edges - centre) / (np.sqrt(2) * sigma)))
    return np.diff(cdf)


def _gaussian_stamp(*, sx: float, sy: float, cx: float, cy: float, size: int) -> np.ndarray:
    return _pixel_integrals(cy, sy, size)[:, None] * _pixel_integrals(cx, sx, size)[None, :]


def test_gaussian_star_is_the_exact_pixel_integral_even_when_undersampled() -> None:
    size = 21
    fwhm = np.array([0.4, 0.8, 1.5])  # 0.4 arcsec = 1.5 pixels: strongly aliased
    dx, dy = np.array([0.3, -0.5, 0.0]), np.array([-0.2, 0.49, 0.1])
    res = render_point_sources(
        psf_fwhm=fwhm, psf="gaussian", dx=dx, dy=dy, flux=3.0, size=size, pixel_scale=PIXEL, wrap_tolerance=1e-6
    )
    sigma = fwhm / PIXEL / (2 * np.sqrt(2 * np.log(2)))
    for i in range(3):
        expected = 3.0 * _gaussian_stamp(sx=sigma[i], sy=sigma[i], cx=size // 2 + dx[i], cy=size // 2 + dy[i], size=size)
        np.testing.assert_allclose(res.images[i], expected, atol=2e-6)
        assert res.flux_outside[i] == pytest.approx(1 - expected.sum() / 3.0, abs=2e-6)


@pytest.mark.parametrize("q", [1.0, 0.35])
@pytest.mark.parametrize("pa", [0.0, 90.0])
def test_n_half_sersic_with_gaussian_psf_is_an_exact_elliptical_gaussian(q: float, pa: float) -> None:
    size, r50, fwhm, dx, dy = 40, 1.1, 0.9, 0.25, -0.4
    res = render_galaxies(
        r50=r50, sersic_n=0.5, q=q, pa=pa, psf_fwhm=fwhm, psf="gaussian", dx=dx, dy=dy, size=size, wrap_tolerance=1e-6
    )
    sigma_gal = r50 / PIXEL / np.sqrt(2 * np.log(2))
    sigma_psf = fwhm / PIXEL / (2 * np.sqrt(2 * np.log(2)))
    major, minor = np.hypot(sigma_gal / np.sqrt(q), sigma_psf), np.hypot(sigma_gal * np.sqrt(q), sigma_psf)
    sx, sy = (major, minor) if pa == 0.0 else (minor, major)
    expected = _gaussian_stamp(sx=sx, sy=sy, cx=size // 2 + dx, cy=size // 2 + dy, size=size)
    np.testing.assert_allclose(res.images[0], expected, atol=2e-6)
    # the linear interpolation in ln k (step 0.02) leaves spectral errors ~5e-5 with long-range tails
    assert res.flux_outside[0] == pytest.approx(1 - expected.sum(), abs=3e-5)


def _moments(image: np.ndarray) -> tuple[float, float, float, float, float]:
    y, x = np.indices(image.shape)
    total = image.sum()
    mx, my = (image * x).sum() / total, (image * y).sum() / total
    cxx = (image * (x - mx) ** 2).sum() / total
    cyy = (image * (y - my) ** 2).sum() / total
    cxy = (image * (x - mx) * (y - my)).sum() / total
    return mx, my, cxx, cyy, cxy


def test_centre_offsets_and_position_angle_follow_the_conventions() -> None:
    size = 48
    res = render_galaxies(
        r50=0.6, sersic_n=1.0, q=0.3, pa=np.array([0.0, 90.0, 45.0, 135.0]), psf_fwhm=0.8,
        dx=np.array([0.3, -0.2, 0.0, 0.45]), dy=np.array([-0.4, 0.1, 0.2, -0.5]), size=size,
    )
    mx, my, cxx, cyy, cxy = zip(*(_moments(im) for im in res.images))
    np.testing.assert_allclose(np.array(mx) - size // 2, [0.3, -0.2, 0.0, 0.45], atol=5e-3)
    np.testing.assert_allclose(np.array(my) - size // 2, [-0.4, 0.1, 0.2, -0.5], atol=5e-3)
    assert cxx[0] > 3 * cyy[0] and cyy[1] > 3 * cxx[1]  # pa = 0: along +x (columns); pa = 90: along y
    assert cxy[2] > 0 > cxy[3]  # pa = 45 points the major axis from +x towards +y


def test_tiny_galaxy_is_a_point_source_and_flux_scales_linearly() -> None:
    kw = dict(psf_fwhm=1.1, psf_beta=2.5, dx=0.2, dy=-0.3, size=32, wrap_tolerance=1e-6)
    star = render_point_sources(flux=5.0, **kw)
    tiny = render_galaxies(r50=1e-4, sersic_n=2.0, q=0.5, pa=10.0, flux=np.array([5.0, 10.0]), **kw)
    np.testing.assert_allclose(tiny.images[0], star.images[0], atol=1e-6)
    np.testing.assert_allclose(tiny.images[1], 2 * tiny.images[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tiny.flux_outside, star.flux_outside[0], atol=5e-6)


@pytest.mark.parametrize("n", [4.0, 6.5])
def test_high_n_wings_are_consistent_between_stamp_sizes_and_grids(n: float) -> None:
    kw = dict(r50=2.0, sersic_n=n, q=0.4, pa=20.0, psf_fwhm=1.0, dx=0.3, dy=-0.1)
    small = render_galaxies(size=40, **kw)
    large = render_galaxies(size=80, **kw)
    tight = render_galaxies(size=40, wrap_tolerance=1e-6, **kw)
    centre = large.images[0, 20:60, 20:60]
    assert np.abs(small.images[0] - centre).sum() < 1e-3
    assert np.abs(small.images[0] - tight.images[0]).sum() < 1e-3
    ring = large.images[0].sum() - centre.sum()
    assert small.flux_outside[0] - large.flux_outside[0] == pytest.approx(ring, abs=1e-3)
    assert 0.05 < large.flux_outside[0] < small.flux_outside[0] < 0.6  # heavy n >= 4 wings
    assert large.images.min() > -1e-5


def test_wrapped_flux_stays_below_the_tolerance() -> None:
    rng = np.random.default_rng(8)
    kw = dict(
        r50=rng.uniform(0.1, 0.8, 12), sersic_n=rng.uniform(0.3, 6.5, 12), q=rng.uniform(0.1, 1, 12),
        pa=rng.uniform(0, 180, 12), psf_fwhm=rng.uniform(0.6, 1.6, 12), psf_beta=rng.uniform(2, 5, 12),
        dx=rng.uniform(-0.5, 0.5, 12), dy=rng.uniform(-0.5, 0.5, 12), size=32,
    )
    default = render_galaxies(**kw)
    exact = render_galaxies(wrap_tolerance=1e-5, **kw)
    assert np.all(exact.grid_sizes >= default.grid_sizes)
    leak = np.abs(default.images - exact.images).sum(axis=(1, 2))
    assert leak.max() < 1e-3


def test_profiles_are_continuous_in_every_parameter() -> None:
    base = dict(r50=0.7, sersic_n=6.2, q=0.6, pa=30.0, psf_fwhm=0.9, psf_beta=3.0, dx=0.1, dy=0.1)
    ref = render_galaxies(**base).images[0]
    for name, step in [("sersic_n", 0.3), ("r50", 0.01), ("q", 0.01), ("pa", 1.0), ("psf_fwhm", 0.01), ("psf_beta", 0.05)]:
        moved = render_galaxies(**{**base, name: base[name] + step}).images[0]
        assert 0 < np.abs(moved - ref).sum() < 0.05, name


def test_result_types_broadcasting_and_torch_inputs() -> None:
    res = render_galaxies(
        r50=torch.tensor([0.3, 0.5, 0.8]), sersic_n=np.array([1.0, 2.0, 4.0]), q=0.7, pa=[0.0, 10.0, 20.0],
        psf_fwhm=1.0, size=16,
    )
    assert isinstance(res, RenderResult) and len(res) == 3
    assert res.images.shape == (3, 16, 16) and res.images.dtype == np.float32
    assert res.flux_outside.shape == (3,) and res.flux_outside.dtype == np.float64
    as_tensor = render_galaxies(r50=0.3, sersic_n=1.0, q=0.7, pa=0.0, psf_fwhm=1.0, size=16, as_numpy=False)
    assert isinstance(as_tensor.images, torch.Tensor) and as_tensor.images.shape == (1, 16, 16)
    np.testing.assert_allclose(as_tensor.images.numpy()[0], res.images[0], atol=1e-7)
    empty = render_galaxies(r50=np.array([]), sersic_n=1.0, q=1.0, pa=0.0, psf_fwhm=1.0, size=8)
    assert empty.images.shape == (0, 8, 8) and empty.flux_outside.shape == (0,)
    assert DEFAULT_MOFFAT_BETA == 3.5


def test_chunk_budget_changes_the_models_by_float32_rounding_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks the element budget cuts (one profile to all of them) give the same models to 1e-7."""
    import lumos_ops.render.draw as draw

    rng = np.random.default_rng(4)
    n = 40
    kw = dict(r50=rng.uniform(0.1, 1.5, n), sersic_n=rng.uniform(0.3, 6.5, n), q=rng.uniform(0.1, 1, n),
              pa=rng.uniform(0, 180, n), psf_fwhm=0.9, dx=rng.uniform(-0.5, 0.5, n), dy=rng.uniform(-0.5, 0.5, n), size=40)
    whole = render_galaxies(**kw)
    for budget in (1, 20_000, 1 << 21):
        monkeypatch.setattr(draw, "_CPU_ELEMENT_BUDGET", budget)
        np.testing.assert_allclose(render_galaxies(**kw).images, whole.images, rtol=0, atol=1e-7)


def test_batching_does_not_change_the_result() -> None:
    rng = np.random.default_rng(3)
    kw = dict(
        r50=rng.uniform(0.1, 1.5, 7), sersic_n=rng.uniform(0.3, 6.5, 7), q=rng.uniform(0.1, 1, 7),
        pa=rng.uniform(0, 180, 7), psf_fwhm=rng.uniform(0.6, 1.6, 7), dx=rng.uniform(-0.5, 0.5, 7), size=24,
    )
    whole = render_galaxies(**kw)
    pieces = render_galaxies(batch_size=2, **kw)
    np.testing.assert_allclose(pieces.images, whole.images, atol=1e-7)
    single = render_galaxies(**{k: (v[4] if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
    np.testing.assert_allclose(single.images[0], whole.images[4], atol=1e-7)
    # one PSF, or two PSFs, for the batch: each distinct PSF transform is computed once
    for fwhm in (np.full(7, 0.9), np.array([0.9, 1.2, 0.9, 1.2, 1.2, 0.9, 0.9])):
        shared = {**kw, "psf_fwhm": fwhm}
        batch = render_galaxies(**shared)
        for i in (0, 1, 6):
            alone = render_galaxies(**{k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in shared.items()})
            np.testing.assert_allclose(alone.images[0], batch.images[i], atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sersic_n": 0.29}, "sersic_n"),
        ({"sersic_n": 6.51}, "sersic_n"),
        ({"r50": 0.0}, "r50"),
        ({"q": 0.0}, "q"),
        ({"q": 1.01}, "q"),
        ({"psf_fwhm": -1.0}, "psf_fwhm"),
        ({"psf_beta": 1.0}, "psf_beta"),
        ({"pa": np.nan}, "pa"),
        ({"size": 0}, "size"),
        ({"psf": "airy"}, "psf"),
        ({"pixel_scale": 0.0}, "pixel_scale"),
        ({"pixel_scale": "0.263"}, "pixel_scale"),
        ({"wrap_tolerance": 0.0}, "wrap_tolerance"),
        ({"batch_size": 0}, "batch_size"),
        ({"device": "nonsense"}, "device"),
        ({"r50": [0.5, 0.6], "q": [0.5, 0.6, 0.7]}, "q"),
        ({"r50": np.ones((2, 2))}, "r50"),
    ],
)
def test_invalid_parameters_are_named(kwargs: dict, name: str) -> None:
    base = dict(r50=0.5, sersic_n=1.0, q=0.8, pa=0.0, psf_fwhm=1.0, size=16)
    with pytest.raises(LumosValueError, match=name):
        render_galaxies(**{**base, **kwargs})


def test_point_source_validation_and_boundary_values_accepted() -> None:
    with pytest.raises(LumosValueError, match="psf_fwhm"):
        render_point_sources(psf_fwhm=0.0)
    ok = render_galaxies(r50=0.5, sersic_n=[0.3, 6.5], q=1.0, pa=0.0, psf_fwhm=1.0, psf_beta=20.0, psf="gaussian", size=8)
    assert np.all(np.isfinite(ok.images))


def test_aliasing_of_a_mixed_batch_matches_single_renders() -> None:
    fwhm, beta = np.array([0.45, 0.9, 0.45]), np.array([10.0, 1.5, 2.0])
    kw = dict(dx=np.array([0.4, -0.3, 0.1]), dy=np.array([-0.45, 0.2, 0.3]), size=15, wrap_tolerance=1e-6)
    batch = render_point_sources(psf_fwhm=fwhm, psf_beta=beta, **kw)
    for i in range(3):
        alone = render_point_sources(psf_fwhm=fwhm[i], psf_beta=beta[i], dx=kw["dx"][i], dy=kw["dy"][i], size=15, wrap_tolerance=1e-6)
        np.testing.assert_allclose(batch.images[i], alone.images[0], atol=2e-6)
