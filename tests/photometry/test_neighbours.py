"""Catalogued neighbours fitted jointly (lumos_ops.photometry.neighbours) and measured without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
from lumos_ops.cutouts import cut_stamps
from lumos_ops.flags import Flag
from lumos_ops.io.exposure import Exposure, read_exposure
from lumos_ops.measure import measure_exposure, prepare_targets, render_target_models
from lumos_ops.noise_calibration import apply_error_scale
from lumos_ops.photometry.neighbours import fit_neighbours
from lumos_ops.survey import paus_survey

SIZE = 60


def _models(catalog: pd.DataFrame, image_shape: tuple[int, int]):
    stamps = cut_stamps(np.zeros(image_shape, dtype=np.float32), catalog["x"], catalog["y"], size=SIZE)
    models, _ = render_target_models(catalog, stamps.dx, stamps.dy, psf_fwhm=0.9, size=SIZE)
    return stamps, models


def _paste(shape, stamps, models, amplitude) -> np.ndarray:
    image = np.zeros(shape)
    for j, a in enumerate(amplitude):
        x0, y0 = stamps.x0[j], stamps.y0[j]
        image[y0 : y0 + SIZE, x0 : x0 + SIZE] += a * models[j]
    return image


def _pair_catalog(distance: float) -> pd.DataFrame:
    catalog = random_catalog(3, shape=(200, 200), seed=3)
    catalog["x"] = [80.3, 80.3 + distance, 150.0]
    catalog["y"] = [90.6, 91.4, 140.2]
    catalog["r50"] = [0.6, 0.9, 0.5]
    return catalog


def test_noiseless_pair_is_separated_exactly() -> None:
    catalog = _pair_catalog(4.0)
    shape = (200, 200)
    stamps, models = _models(catalog, shape)
    truth = np.array([120.0, 300.0, 50.0])
    image = (_paste(shape, stamps, models, truth) + 6.0).astype(np.float32)
    stamps = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
    fit = fit_neighbours(image, stamps, models)
    # the pair is fitted jointly, the third target (70 px away) is left alone
    assert fit.fitted.tolist() == [True, True, False]
    # to the sky annulus' share of the galaxies' wings (15-29 px from each target)
    np.testing.assert_allclose(fit.amplitude[:2], truth[:2], rtol=3e-3)
    cleaned = fit.clean(stamps, models).data
    for i in range(2):
        # the target's own light is left whole; its neighbour's, to the amplitude's error
        np.testing.assert_allclose(cleaned[i] - 6.0, truth[i] * models[i], atol=3e-3 * (truth[:2] * models[:2].max(axis=(1, 2))).max())
    np.testing.assert_array_equal(cleaned[2], stamps.data[2])
    # under white noise the variance factor is G_ii (G^-1)_ii of the models' overlaps on the image
    flat = np.stack([_paste(shape, stamps, models, np.eye(3)[k]).ravel() for k in range(2)])
    gram = flat @ flat.T
    expected = np.diag(gram) * np.diag(np.linalg.inv(gram))
    white = fit_neighbours(image, stamps, models, correlation=False)
    np.testing.assert_allclose(white.variance_factor[:2], expected, rtol=1e-4)
    np.testing.assert_allclose(white.amplitude, fit.amplitude, rtol=0, atol=0)
    # a frame without noise is measured as white; the sky annuli's share of the sums (their means
    # are subtracted) moves it by 2 %
    np.testing.assert_allclose(fit.variance_factor[:2], expected, rtol=0.03)
    assert fit.variance_factor[2] == 1.0 and expected.min() > 1.2
    assert fit.blended.tolist() == [True, True, False]
    # how much of each one's light the other's model reads: rho^2 = G_01^2 / (G_00 G_11)
    np.testing.assert_allclose(fit.overlap[:2], gram[0, 1] ** 2 / (gram[0, 0] * gram[1, 1]), rtol=1e-3)
    assert fit.overlap[2] == 0.0


def test_isolated_targets_are_untouched(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    plain = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), neighbours=False, calibrate_errors=False)
    fitted = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), calibrate_errors=False)
    assert (fitted["neighbour_variance"].dropna() == 1.0).all()  # NaN: the target off the image
    assert (fitted["neighbour_light"].dropna() == 0.0).all()
    assert (fitted["neighbour_overlap"].dropna() == 0.0).all()
    extra = ["neighbour_variance", "neighbour_light", "neighbour_overlap", "neighbour_leak", "neighbour_leak_err"]
    pd.testing.assert_frame_equal(fitted.drop(columns=[c for c in extra if c in fitted]), plain)


def test_a_faint_far_neighbour_is_left_alone(tmp_path: Path) -> None:
    catalog = _pair_catalog(45.0)
    catalog.loc[1, "r50"] = 0.4
    synthetic_exposure(catalog, np.array([400.0, 20.0, 50.0]), shape=(200, 200), seed=4).write(tmp_path / "far.fits")
    ctx = prepare_targets(read_exposure(tmp_path / "far.fits"), catalog)
    # their stamps overlap (45 px), but neither moves the other's matched filter by a tenth of its noise
    assert ctx.neighbours is not None and not ctx.neighbours.fitted.any() and ctx.neighbours.residual is None
    catalog.loc[1, "x"] = 80.3 + 6.0
    synthetic_exposure(catalog, np.array([400.0, 20.0, 50.0]), shape=(200, 200), seed=4).write(tmp_path / "near.fits")
    near = prepare_targets(read_exposure(tmp_path / "near.fits"), catalog)
    assert near.neighbours.fitted.tolist() == [True, True, False]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Exposure, pd.DataFrame, np.ndarray, int]:
    """64 targets on a grid, each with a catalogued neighbour 3-8 px away (a 600 x 600 synthetic exposure)."""
    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.arange(60, 560, 70) + 0.3, np.arange(60, 560, 70) - 0.2)
    n = gx.size
    catalog = random_catalog(2 * n, shape=(600, 600), seed=5)
    distance, angle = rng.uniform(3, 8, n), rng.uniform(0, 2 * np.pi, n)
    catalog["x"] = np.r_[gx.ravel(), gx.ravel() + distance * np.cos(angle)]
    catalog["y"] = np.r_[gy.ravel(), gy.ravel() + distance * np.sin(angle)]
    flux = np.exp(rng.uniform(np.log(20.0), np.log(600.0), 2 * n))
    path = tmp_path_factory.mktemp("neighbours") / "pairs.fits"
    synthetic_exposure(catalog, flux, shape=(600, 600), seed=1).write(path)
    return read_exposure(path), catalog, flux, n


def _scores(table: pd.DataFrame, flux: np.ndarray, n: int) -> dict[str, tuple[float, float]]:
    out = {}
    for method, rows in table.groupby("method"):
        f, e = rows["flux"].to_numpy()[:n], rows["flux_err"].to_numpy()[:n]
        pull = (f - flux[:n]) / e
        q16, q84 = np.percentile(pull, [16, 84])
        out[method] = (float(np.median(f / flux[:n] - 1)), float((q84 - q16) / 2))
    return out


def test_neighbours_out_of_every_classical_estimate(pairs) -> None:
    exposure, catalog, flux, n = pairs
    methods = ("aperture", "optimal", "modelfit")
    # the synthetic galaxies are exactly their catalogue model: no model error, no error floor
    plain = _scores(measure_exposure(exposure, catalog, methods=methods, neighbours=False, error_floor=0.0,
                                     neighbour_error_floor=0.0), flux, n)
    table = measure_exposure(exposure, catalog, methods=methods, chunk_size=7, error_floor=0.0, neighbour_error_floor=0.0)
    fitted = _scores(table, flux, n)
    for method in methods:
        assert plain[method][0] > 0.15 and plain[method][1] > 5, (method, plain[method])
        bias, pull = fitted[method]
        assert abs(bias) < 0.02 and 0.8 < pull < 1.2, (method, fitted[method])
    targets = table[table["method"] == "optimal"]
    assert (targets["neighbour_variance"].to_numpy() > 1.0).all()
    blended = (targets["flag"].to_numpy() & Flag.BLENDED) != 0
    assert blended.mean() > 0.5


def test_neighbour_light_is_what_the_fit_took_from_the_matched_filter(pairs) -> None:
    exposure, catalog, _, n = pairs
    # the image's own stamps, and the stamps less the fit alone (no other sources' wing light subtracted)
    raw = prepare_targets(exposure, catalog, neighbours=False, mask_other_sources=False)
    ctx = prepare_targets(exposure, catalog, mask_other_sources=False)
    light = ctx.neighbour_light
    fitted = ctx.neighbours.fitted
    assert fitted[:n].mean() > 0.5 and (light[~fitted] == 0.0).all() and (light[fitted] > 0.0).all()
    # one neighbour per target: the matched filter on the image minus that on the cleaned stamp
    m = ctx.models.astype(np.float64)
    usable = np.isfinite(raw.stamps.data) & np.isfinite(ctx.stamps.data)
    diff = np.where(usable, raw.stamps.data - ctx.stamps.data, 0.0)
    taken = (m * diff).sum(axis=(1, 2)) / (np.where(usable, m, 0.0) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(np.abs(taken[fitted]), light[fitted], rtol=2e-3)
    # the error floor covers the neighbours' models too, with its own fraction (the survey's by default)
    table = measure_exposure(exposure, catalog, methods=("optimal",), error_floor=0.02, neighbour_error_floor=0.05)
    expected = np.sqrt(table["flux_err_stat"] ** 2 + (0.02 * table["flux"]) ** 2 + (0.05 * table["neighbour_light"]) ** 2)
    np.testing.assert_allclose(table["flux_err"], expected, rtol=1e-9)
    assert (table["neighbour_light"].to_numpy()[fitted] > 0).all()
    default = measure_exposure(exposure, catalog, methods=("optimal",), error_floor=0.02)
    e_n = paus_survey().neighbour_error_floor
    expected = np.sqrt(default["flux_err_stat"] ** 2 + (0.02 * default["flux"]) ** 2 + (e_n * default["neighbour_light"]) ** 2)
    np.testing.assert_allclose(default["flux_err"], expected, rtol=1e-9)


def test_neighbour_fit_widens_the_errors(pairs) -> None:
    exposure, catalog, _, n = pairs
    ctx = prepare_targets(exposure, catalog.iloc[:2 * n])
    factor = ctx.variance_factor
    from lumos_ops.photometry.optimal import OptimalWeightedSum

    frame = OptimalWeightedSum().measure(ctx).assign(flux=0.0)  # background-dominated rows
    widened = apply_error_scale(frame, "optimal", 1.0, ctx, variance_factor=factor)
    np.testing.assert_allclose(widened["flux_err"], frame["flux_err"] * np.sqrt(factor), rtol=1e-6)
    np.testing.assert_array_equal(widened["error_scale"], 1.0)


def test_target_catalogued_twice_is_flagged_not_fitted(tmp_path: Path) -> None:
    one = random_catalog(1, shape=(200, 200), seed=2).assign(x=100.2, y=99.7)
    catalog = pd.concat([one, one.assign(ref_id=2)], ignore_index=True)
    synthetic_exposure(catalog.iloc[:1], np.array([200.0]), shape=(200, 200), seed=0).write(tmp_path / "e.fits")
    exposure = read_exposure(tmp_path / "e.fits")
    ctx = prepare_targets(exposure, catalog)
    assert ctx.neighbours is not None and not ctx.neighbours.fitted.any()
    assert ctx.neighbours.degenerate.all() and (ctx.base_flags & Flag.BLENDED).all()
    np.testing.assert_array_equal(ctx.stamps.data, prepare_targets(exposure, catalog, neighbours=False).stamps.data)
    table = measure_exposure(exposure, catalog, methods=("optimal",))
    assert np.isfinite(table["flux"]).all() and (table["neighbour_variance"] == 1.0).all()


def test_masked_pixels_and_image_edges(tmp_path: Path) -> None:
    catalog = _pair_catalog(5.0)
    catalog.loc[2, ["x", "y"]] = [3.0, 150.0]  # at the edge, far from the pair
    catalog.loc[1, "x"] = 196.0  # the second of the pair near the right edge ...
    catalog.loc[0, "x"] = 191.5  # ... and its neighbour
    shape = (200, 200)
    stamps, models = _models(catalog, shape)
    truth = np.array([150.0, 90.0, 40.0])
    image = (_paste_clipped(shape, stamps, models, truth) + 6.0).astype(np.float32)
    image[85:89, 185:189] = np.nan
    stamps = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
    fit = fit_neighbours(image, stamps, models)
    assert fit.fitted.tolist() == [True, True, False] and fit.variance_factor[0] > 1.1
    np.testing.assert_allclose(fit.amplitude[:2], truth[:2], rtol=3e-3)


def _paste_clipped(shape, stamps, models, amplitude) -> np.ndarray:
    ny, nx = shape
    big = np.zeros((ny + 2 * SIZE, nx + 2 * SIZE))
    for j, a in enumerate(amplitude):
        x0, y0 = stamps.x0[j] + SIZE, stamps.y0[j] + SIZE
        big[y0 : y0 + SIZE, x0 : x0 + SIZE] += a * models[j]
    return big[SIZE : SIZE + ny, SIZE : SIZE + nx]


def test_overlap_pairs_and_groups_match_brute_force() -> None:
    from lumos_ops.photometry.neighbours import _components, _overlap_pairs

    rng = np.random.default_rng(1)
    x0, y0 = rng.integers(-30, 1000, 400), rng.integers(-30, 500, 400)
    x0[:5] = 17  # ties in the sort
    found = {tuple(sorted(p)) for p in _overlap_pairs(x0, y0, SIZE).tolist()}
    near = (np.abs(x0[:, None] - x0[None]) < SIZE) & (np.abs(y0[:, None] - y0[None]) < SIZE)
    assert found == set(zip(*(a.tolist() for a in np.nonzero(np.triu(near, 1))), strict=True)) and found
    label = _components(10, np.array([[0, 5], [5, 3], [7, 8], [3, 9]]))
    assert label.tolist() == [0, 1, 2, 0, 4, 0, 6, 7, 7, 0]
    assert _overlap_pairs(np.zeros(1, dtype=int), np.zeros(1, dtype=int), SIZE).shape == (0, 2)


def test_group_above_max_group_is_fitted_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clique (every pair blended) fitted target by target with its partners is the joint fit."""
    import lumos_ops.photometry.neighbours as neighbours

    catalog = random_catalog(4, shape=(200, 200), seed=5)
    catalog["x"] = [90.2, 94.7, 91.1, 95.3]
    catalog["y"] = [100.4, 99.8, 104.9, 104.2]
    shape = (200, 200)
    stamps, models = _models(catalog, shape)
    truth = np.array([150.0, 80.0, 220.0, 60.0])
    image = (_paste(shape, stamps, models, truth) + 6.0).astype(np.float32)
    stamps = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
    joint = fit_neighbours(image, stamps, models)
    monkeypatch.setattr(neighbours, "MAX_GROUP", 2)
    local = fit_neighbours(image, stamps, models)
    assert joint.fitted.all() and local.fitted.all()
    np.testing.assert_allclose(local.amplitude, joint.amplitude, rtol=1e-9)
    np.testing.assert_allclose(local.variance_factor, joint.variance_factor, rtol=1e-9)
    np.testing.assert_allclose(local.contamination, joint.contamination, rtol=1e-9)
    np.testing.assert_allclose(local.amplitude, truth, rtol=5e-3)  # the sky annulus holds some of the wings


def test_crowded_field_is_fitted_in_local_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blends that link into one component of a thousand targets are fitted locally, near the truth."""
    import lumos_ops.photometry.neighbours as neighbours

    local_groups = []
    fit_locally = neighbours._fit_locally
    monkeypatch.setattr(neighbours, "_fit_locally", lambda group, *args, **kwargs: (
        local_groups.append(group.size), fit_locally(group, *args, **kwargs)))
    shape = (700, 700)
    catalog = random_catalog(1600, shape=shape, margin=30.0, seed=6)  # one target per 270 px^2
    flux = 10 ** (-0.4 * (catalog["i_auto"].to_numpy() - 25.0))
    stamps, models = _models(catalog, shape)
    image = (_paste(shape, stamps, models, flux) + 6.0).astype(np.float32)
    stamps = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
    fit = fit_neighbours(image, stamps, models)
    assert local_groups and max(local_groups) > neighbours.MAX_GROUP
    assert np.isfinite(fit.amplitude).all() and (fit.variance_factor >= 1.0).all()
    relative = (fit.amplitude - flux)[fit.fitted] / flux[fit.fitted]
    assert np.median(np.abs(relative)) < 0.02


def _correlated_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Unit-variance noise: two thirds of its variance smoothed by a Gaussian of ``scale`` px, one third white."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), scale, mode="wrap")
    smooth /= smooth.std()
    return np.sqrt(2.0 / 3.0) * smooth + np.sqrt(1.0 / 3.0) * rng.standard_normal(shape)


@pytest.mark.slow
def test_the_variance_factor_follows_the_sky_noise_correlation() -> None:
    """Noise correlated over a pair's separation is shared by both sums and cancels in part in the
    joint amplitude: the factor measured on the frame predicts the scatter, the white one does not."""
    from lumos_ops.photometry.background import annulus_background
    from lumos_ops.photometry.frame_sources import frame_sources

    side, grid = 480, 6
    centres = (np.arange(grid) + 0.5) * side / grid
    cx, cy = (c.ravel() for c in np.meshgrid(centres, centres))
    catalog = random_catalog(2 * cx.size, shape=(side, side), seed=11)
    catalog["x"] = np.concatenate([cx + 0.3, cx + 4.3])
    catalog["y"] = np.concatenate([cy + 0.4, cy - 0.2])
    catalog["r50"] = 0.9
    catalog["q"] = 1.0
    stamps, models = _models(catalog, (side, side))
    flux = np.concatenate([np.full(cx.size, 400.0), np.full(cx.size, 600.0)])
    light = _paste((side, side), stamps, models, flux)
    target = np.arange(cx.size)
    gram = np.square(models[target].astype(np.float64)).sum(axis=(1, 2))
    no_sources = np.zeros((target.size, SIZE, SIZE), dtype=bool)
    rng = np.random.default_rng(5)
    for scale in (0.0, 3.0):
        joint, alone, factors, white = [], [], [], []
        for _ in range(60):
            noise = rng.standard_normal((side, side)) if scale == 0.0 else _correlated_noise(rng, (side, side), scale)
            image = (light + 2.0 * noise).astype(np.float32)
            cut = cut_stamps(image, catalog["x"], catalog["y"], size=SIZE)
            # as the measurement does: the frame's detections are left out of the noise's correlation
            fit = fit_neighbours(image, cut, models, source_mask=frame_sources(image).mask)
            assert fit.fitted[target].all()
            joint.append(fit.amplitude[target])
            factors.append(fit.variance_factor[target])
            if not white:
                white.append(fit_neighbours(image, cut, models, correlation=False).variance_factor[target])
                # without a source mask the frame's own detections are left out of the correlation
                unmasked = fit_neighbours(image, cut, models).variance_factor[target]
                np.testing.assert_allclose(unmasked, fit.variance_factor[target], rtol=0.03)
            # the isolated target's matched filter with the same sky annulus, on the noise alone
            sky_only = cut_stamps((2.0 * noise).astype(np.float32), catalog["x"][target], catalog["y"][target], size=SIZE)
            sky = annulus_background(sky_only.data, sky_only.dx, sky_only.dy, r_in=SIZE / 4.0, r_out=SIZE / 2.0 - 1.0,
                                     source_mask=no_sources).mean
            alone.append(((sky_only.data - sky[:, None, None]) * models[target]).sum(axis=(1, 2)) / gram)
        ratio = np.var(np.array(joint), axis=0, ddof=1).mean() / np.var(np.array(alone), axis=0, ddof=1).mean()
        predicted = np.mean(factors)
        # 2,160 targets measure each variance to 3 %
        assert 0.9 < ratio / predicted < 1.1, (scale, ratio, predicted)
        if scale:
            # the white-noise factor overstates the cost of the fit by more than a fifth
            assert np.mean(white) > 1.2 * ratio, (np.mean(white), ratio)
