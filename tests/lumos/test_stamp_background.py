"""The stamp background a LUMOS network subtracts (``Normalization.stamp_background``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import Normalization
from lumos_ops.lumos.preprocess import (
    estimate_normalization,
    fill_with_sky,
    pixel_flux_estimate,
    prepare_inputs,
    stamp_background,
)

from lumos_helpers import NORM

SIZE = 60


def _crowded_stamps(n: int, seed: int) -> tuple[np.ndarray, float]:
    """Sky 5 e-/s with white noise 1 e-/s; every stamp has a target at its centre and three compact
    sources of 40-120 e-/s scattered over it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    stamps = 5.0 + rng.normal(0.0, 1.0, (n, SIZE, SIZE))
    for k in range(n):
        stamps[k] += 30.0 * np.exp(-((xx - 30) ** 2 + (yy - 30) ** 2) / (2 * 2.0**2)) / (2 * np.pi * 2.0**2)
        for _ in range(3):
            x0, y0 = rng.uniform(3, SIZE - 3, 2)
            flux = rng.uniform(40.0, 120.0)
            stamps[k] += flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.5**2)) / (2 * np.pi * 1.5**2)
    return stamps, 5.0


def test_masked_annulus_finds_the_sky_where_the_median_is_lifted_by_sources():
    stamps, sky = _crowded_stamps(200, seed=1)
    median = stamp_background(stamps, "median")
    masked = stamp_background(stamps, "masked_annulus")
    assert np.median(median) - sky > 0.03  # faint wings of the sources lift the median
    assert abs(np.mean(masked) - sky) < 0.01
    assert np.std(masked) < 0.05  # about 2,000 annulus pixels of unit noise
    assert (stamp_background(stamps) == median).all()  # the default stays the median


def test_masked_annulus_ignores_nan_pixels_and_falls_back_on_the_median():
    stamps, sky = _crowded_stamps(4, seed=2)
    stamps[0, :, :20] = np.nan
    stamps[1] = np.nan
    stamps[2, :, :] = np.nan
    stamps[2, 28:32, 28:32] = 7.0  # only the core is on the CCD: no annulus pixel
    out = stamp_background(stamps, "masked_annulus")
    assert abs(out[0] - sky) < 0.1 and out[1] == 0.0 and out[2] == 7.0
    with pytest.raises(LumosValueError, match="masked_annulus"):
        stamp_background(stamps, "mode")


def test_the_checkpoint_normalisation_selects_the_background():
    stamps, sky = _crowded_stamps(50, seed=3)
    models = np.zeros_like(stamps)
    args = (np.full(50, 21.0), np.full(50, 100.0), np.full(50, 100.0), np.zeros(50, int))
    plain = prepare_inputs(stamps, models, *args, NORM)
    masked = prepare_inputs(stamps, models, *args, dataclasses.replace(NORM, stamp_background="masked_annulus"))
    corner = (slice(None), 0, slice(0, 5), slice(0, 5))
    assert np.median(masked.images[corner]) > np.median(plain.images[corner])  # a lower b
    assert Normalization.from_dict({k: v for k, v in NORM.to_dict().items() if k != "stamp_background"}) == NORM
    with pytest.raises(LumosValueError, match="stamp_background"):
        Normalization(stamp_background="mode")
    norm = estimate_normalization(stamps, models + 1e-3, args[0], np.full(50, 30.0), ccd_shape=(200, 300),
                                  stamp_background_method="masked_annulus")
    assert norm.stamp_background == "masked_annulus" and abs(norm.background_mean - sky) < 0.02


def test_training_batches_compute_each_stamps_background_once(tiny_training_set):
    """``StampBatches`` keeps the masked-annulus background of every stamp it has read: a second read
    of the same stamps gives bit-identical inputs, equal to ``prepare_inputs`` computing it itself."""
    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.data import StampBatches

    ts = TrainingSet(tiny_training_set)
    ids = ts.indices("train")
    norm = dataclasses.replace(NORM, stamp_background="masked_annulus")
    batches = StampBatches(ts, ids, norm)
    first = batches[np.arange(8)]
    assert np.isfinite(batches._background[ids[:8]]).all() and np.isnan(batches._background[ids[8:]]).all()
    second = batches[np.arange(8)]
    images = ts.images(ids[:8])
    meta = ts.meta.iloc[ids[:8]]
    direct = prepare_inputs(images[:, 0], images[:, 1], meta["i_auto"].to_numpy(), meta["ccd_x"].to_numpy(),
                            meta["ccd_y"].to_numpy(), meta["band_epoch"].to_numpy(), norm)
    for key, value in (("images", direct.images), ("scalars", direct.scalars)):
        assert np.array_equal(first[key].numpy(), value) and np.array_equal(second[key].numpy(), value)
    with pytest.raises(LumosValueError, match="background must have shape"):
        prepare_inputs(images[:, 0], images[:, 1], meta["i_auto"].to_numpy(), meta["ccd_x"].to_numpy(),
                       meta["ccd_y"].to_numpy(), meta["band_epoch"].to_numpy(), norm, background=np.zeros(3))


def test_pixel_flux_estimate_is_the_matched_filter_over_the_finite_pixels():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    model = np.exp(-((xx - 30) ** 2 + (yy - 30) ** 2) / (2 * 2.5**2))
    model /= model.sum()
    flux = np.array([-20.0, 0.0, 15.0, 400.0])
    stamps = 4.0 + flux[:, None, None] * model + rng.normal(0.0, 0.5, (4, SIZE, SIZE))
    stamps[2, 28:31, 28:31] = np.nan  # masked pixels in the core
    models = np.broadcast_to(model, stamps.shape).copy()
    error = 0.5 / np.sqrt((model**2).sum())
    estimate = pixel_flux_estimate(stamps, models, np.full(4, 4.0))
    assert np.all(np.abs(estimate - flux) < 4 * error * np.array([1, 1, 3, 1])), (estimate, flux, error)
    assert pixel_flux_estimate(stamps[:1], np.zeros((1, SIZE, SIZE)), np.zeros(1))[0] == 0.0


def test_training_batches_balanced_weights(tiny_training_set):
    """``balanced_weights=True``: each stamp's weight is ``ReferencePrior.balanced_weights`` of its
    true flux and its matched-filter flux, the latter computed once per stamp."""
    from lumos_ops.flux_prior import ReferencePrior
    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.data import StampBatches

    ts = TrainingSet(tiny_training_set)
    ids = ts.indices("train")
    prior = ReferencePrior(low=-50.0, high=3000.0)
    plain = StampBatches(ts, ids, NORM, flux_prior=prior)[np.arange(8)]["weight"].numpy()
    batches = StampBatches(ts, ids, NORM, flux_prior=prior, balanced_weights=True)
    weight = batches[np.arange(8)]["weight"].numpy()
    images = ts.images(ids[:8])
    estimate = pixel_flux_estimate(images[:, 0], images[:, 1], stamp_background(images[:, 0]))
    flux = ts.meta["flux"].to_numpy()[ids[:8]]
    np.testing.assert_allclose(weight, prior.balanced_weights(flux, estimate), rtol=1e-6)
    np.testing.assert_allclose(plain, prior.importance_weights(flux), rtol=1e-6)
    assert np.isfinite(batches._estimate[ids[:8]]).all() and np.isnan(batches._estimate[ids[8:]]).all()
    assert not np.allclose(weight, plain)


def test_lumos_in_production_leaves_out_the_frames_own_detections(tmp_path):
    """A masked-annulus model (the shipped default) measured by ``LumosMethod`` subtracts the annulus
    mean without the sources detected once on the frame (``TargetContext.stamp_source_mask``): the
    same inputs as ``prepare_inputs`` given that background, and a background within a few hundredths
    of the pixel noise of the per-stamp detection the training stamps use."""
    import torch

    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.lumos.inference import predict_mixtures
    from lumos_ops.lumos.method import LumosMethod
    from lumos_ops.measure import prepare_targets

    from lumos_helpers import write_exposure

    path, catalog = write_exposure(tmp_path / "e.fits", seed=7)
    ctx = prepare_targets(read_exposure(path), catalog)
    method = LumosMethod()
    loaded = method.loaded
    assert loaded.normalization.stamp_background == "masked_annulus"
    frame = method.measure(ctx)
    mask = ctx.stamp_source_mask
    assert mask.shape == ctx.stamps.data.shape and mask.any()
    per_frame = stamp_background(ctx.stamps.data, "masked_annulus", source_mask=mask)
    per_stamp = stamp_background(ctx.stamps.data, "masked_annulus")
    noise = float(np.nanstd(ctx.stamps.data[:, :5, :5]))
    assert np.nanmedian(np.abs(per_frame - per_stamp)) < 0.05 * noise
    row, _ = method._band_epoch_row(loaded, ctx.exposure)
    i_auto = ctx.catalog["i_auto"].to_numpy(np.float64)
    # other detected sources' pixels (not the target's own) become the stamp's sky in what LUMOS reads
    other = ctx.other_source_pixels & np.isfinite(ctx.stamps.data)
    assert other.any() and not other[:, 30, 30].any()
    seeds = np.column_stack([np.rint(ctx.x).astype(np.int64), np.rint(ctx.y).astype(np.int64)])
    stamps = fill_with_sky(ctx.stamps.data, other, per_frame, np.sqrt(ctx.stamp_sky.variance), seeds)
    assert np.isfinite(stamps[other]).all()

    def mean_flux(frame_or_mixtures) -> np.ndarray:
        if hasattr(frame_or_mixtures, "alpha"):
            return (frame_or_mixtures.alpha * frame_or_mixtures.mu).sum(axis=1)
        k = sum(1 for c in frame_or_mixtures.columns if c.startswith("alpha_"))
        return (frame_or_mixtures[[f"alpha_{i}" for i in range(k)]].to_numpy()
                * frame_or_mixtures[[f"mu_{i}" for i in range(k)]].to_numpy()).sum(axis=1)

    for data, result in ((stamps, frame),
                         (ctx.stamps.data, method.measure(dataclasses.replace(ctx, mask_other_sources=False)))):
        inputs = prepare_inputs(data, ctx.models, i_auto, ctx.x, ctx.y, np.full(ctx.n, row), loaded.normalization,
                                background=per_frame)
        with torch.no_grad():
            mixtures = predict_mixtures(loaded, inputs, i_auto)
        np.testing.assert_allclose(mean_flux(result), mean_flux(mixtures), rtol=1e-5, atol=1e-4)
    # replacing other sources does not flag the targets MASKED
    assert not np.any(frame["flag"].to_numpy() & 4)


def test_other_sources_pixels_become_sky_of_the_stamps_level_and_noise():
    rng = np.random.default_rng(0)
    cutouts = rng.normal(3.0, 2.0, (3, 40, 40)).astype(np.float32)
    fill = np.zeros(cutouts.shape, dtype=bool)
    fill[0, :20] = True  # half of stamp 0
    fill[2, 5:10, 5:10] = True
    level, sigma = np.array([10.0, 0.0, np.nan]), np.array([0.5, 1.0, 1.0])
    seeds = np.array([[1, 2], [3, 4], [5, 6]])
    out = fill_with_sky(cutouts, fill, level, sigma, seeds)
    assert out.dtype == cutouts.dtype
    np.testing.assert_array_equal(out[~fill], cutouts[~fill])
    assert np.mean(out[0][fill[0]]) == pytest.approx(10.0, abs=0.05)
    assert np.std(out[0][fill[0]]) == pytest.approx(0.5, rel=0.1)
    assert np.isnan(out[2][fill[2]]).all()  # no level to fill with: padded downstream
    np.testing.assert_array_equal(out, fill_with_sky(cutouts, fill, level, sigma, seeds))
    other_seed = fill_with_sky(cutouts, fill, level, sigma, seeds + 1)
    assert not np.array_equal(out[0][fill[0]], other_seed[0][fill[0]])
