"""Noise-texture augmentation of TEAHUPOO backgrounds: the kernel, the re-texturing of one cutout, and the
generator's seeded, recorded use of it (off by default, leaving the output unchanged)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim import SurveyManifest, TeahupooConfig, generate_training_set
from lumos_ops.sim.noise_texture import RESAMPLE_KERNELS, kernel_padding, retexture, texture_kernel_1d
from lumos_ops.sim.teahupoo import META_COLUMNS, NOISE_META_COLUMNS

SIZE = 200


def _lag1(image: np.ndarray) -> float:
    """Lag-1 autocorrelation along x and y of a zero-mean field."""
    centred = image - image.mean()
    return float(0.5 * (np.mean(centred[:, 1:] * centred[:, :-1]) + np.mean(centred[1:] * centred[:-1]))
                 / np.mean(centred**2))


def _textured(background: np.ndarray, sigma: float, kind: str = "none", shift: float = 0.0, seed: int = 0) -> np.ndarray:
    pad = kernel_padding(1.5)
    kernel = texture_kernel_1d(sigma, kind, shift)
    return retexture(background, kernel, kernel, pad, np.random.default_rng(seed))


@pytest.mark.parametrize("kind", RESAMPLE_KERNELS)
@pytest.mark.parametrize("sigma", [0.0, 0.4, 1.5])
def test_kernel_has_unit_sum_odd_length_and_fits_the_padding(kind, sigma):
    kernel = texture_kernel_1d(sigma, kind, 0.37)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert kernel.size % 2 == 1 and kernel.size <= 2 * kernel_padding(1.5) + 1
    if kind == "none" and sigma == 0.0:
        assert kernel.tolist() == [1.0]


def test_kernel_rejects_bad_arguments():
    with pytest.raises(LumosValueError, match="resampling kernel"):
        texture_kernel_1d(1.0, "cubic", 0.5)
    with pytest.raises(LumosValueError, match="shift"):
        texture_kernel_1d(1.0, "bilinear", 1.0)
    with pytest.raises(LumosValueError, match="sigma"):
        texture_kernel_1d(-0.1, "none", 0.0)


def test_white_noise_keeps_its_mean_and_sigma_and_gains_correlation_with_the_kernel_width():
    pad = kernel_padding(1.5)
    rng = np.random.default_rng(1)
    background = 5.0 + 2.0 * rng.standard_normal((SIZE + 2 * pad, SIZE + 2 * pad))
    lags = []
    for sigma in (0.0, 0.5, 1.0, 1.5):
        out = _textured(background, sigma)
        assert out.shape == (SIZE, SIZE)
        assert out.std() == pytest.approx(2.0, rel=0.04)
        assert out.mean() == pytest.approx(5.0, abs=0.05)
        lags.append(_lag1(out))
    assert abs(lags[0]) < 0.02
    assert lags == sorted(lags) and lags[-1] > 0.7
    for kind in ("bilinear", "lanczos3"):
        out = _textured(background, 0.0, kind, 0.5)
        assert out.std() == pytest.approx(2.0, rel=0.04) and _lag1(out) > 0.2


def test_identity_kernel_returns_the_cutout_and_nans_stay_masked():
    pad = kernel_padding(1.5)
    background = np.random.default_rng(2).standard_normal((SIZE + 2 * pad, SIZE + 2 * pad))
    assert np.array_equal(_textured(background, 0.0), background[pad:-pad, pad:-pad])
    background[pad + 10, pad + 20] = np.nan
    out = _textured(background, 1.0)
    assert np.isnan(out[10, 20]) and np.isfinite(np.delete(out.ravel(), 10 * SIZE + 20)).all()


def test_extended_sources_keep_their_flux():
    """Unit-sum kernel: a neighbour's flux is unchanged (a unit-L2 kernel would multiply it by ~3.5 at 1 px)."""
    pad = kernel_padding(1.5)
    n = SIZE + 2 * pad
    y, x = np.mgrid[:n, :n] - n / 2
    blob = 4000.0 * np.exp(-0.5 * (x**2 + y**2) / 4.0**2) / (2 * np.pi * 4.0**2)
    background = blob + np.random.default_rng(3).standard_normal((n, n))
    out = _textured(background, 1.0, "lanczos3", 0.3)
    box = (slice(SIZE // 2 - 25, SIZE // 2 + 25),) * 2
    assert out[box].sum() == pytest.approx(blob[pad:-pad, pad:-pad][box].sum(), rel=0.03)


def test_seeded():
    pad = kernel_padding(1.5)
    background = np.random.default_rng(4).standard_normal((SIZE + 2 * pad, SIZE + 2 * pad))
    assert np.array_equal(_textured(background, 1.0, seed=7), _textured(background, 1.0, seed=7))
    assert not np.array_equal(_textured(background, 1.0, seed=7), _textured(background, 1.0, seed=8))


def test_config_validation_and_manifest_without_the_option():
    assert "noise_texture_fraction" not in TeahupooConfig(n_stamps=1).to_dict()
    on = TeahupooConfig(n_stamps=1, noise_texture_fraction=0.5).to_dict()
    assert on["noise_texture_fraction"] == 0.5 and on["noise_resample_kernels"] == list(RESAMPLE_KERNELS)
    with pytest.raises(LumosValueError, match="noise_texture_fraction"):
        TeahupooConfig(n_stamps=1, noise_texture_fraction=1.5)
    with pytest.raises(LumosValueError, match="noise_kernel_sigma_range"):
        TeahupooConfig(n_stamps=1, noise_kernel_sigma_range=(1.0, 0.5))
    with pytest.raises(LumosValueError, match="noise_resample_kernels"):
        TeahupooConfig(n_stamps=1, noise_resample_kernels=("bicubic",))


def _set(tmp_path, small_survey: SurveyManifest, name: str, **kw):
    catalog = pd.read_parquet(small_survey.catalog_path)
    config = TeahupooConfig(n_stamps=120, shard_size=64, seed=5, stamp_size=40, **kw)
    out = tmp_path / name
    generate_training_set(config, small_survey.exposure_paths, catalog, out)
    stamps = np.concatenate([np.load(p) for p in sorted((out / "shards").glob("*.npy"))])
    return out, pd.read_parquet(out / "meta.parquet"), stamps


def test_generator_textures_the_drawn_stamps_only_and_records_them(tmp_path, small_survey: SurveyManifest):
    off_dir, off_meta, off = _set(tmp_path, small_survey, "off")
    on_dir, on_meta, on = _set(tmp_path, small_survey, "on", noise_texture_fraction=0.5)
    again_dir, _, again = _set(tmp_path, small_survey, "again", noise_texture_fraction=0.5)
    assert tuple(off_meta.columns) == META_COLUMNS
    assert "noise_texture_fraction" not in json.loads((off_dir / "manifest.json").read_text())["config"]
    assert tuple(on_meta.columns) == META_COLUMNS + NOISE_META_COLUMNS
    assert np.array_equal(on, again, equal_nan=True) and on_meta.equals(pd.read_parquet(again_dir / "meta.parquet"))

    textured = on_meta.noise_textured.to_numpy()
    assert 0.3 < textured.mean() < 0.7
    assert on_meta.noise_kernel_sigma[textured].between(0.0, 1.5).all() and (on_meta.noise_kernel_sigma[~textured] == 0).all()
    assert set(on_meta.noise_resample[textured]) <= set(RESAMPLE_KERNELS) and (on_meta.noise_resample[~textured] == "none").all()
    assert on_meta[list(META_COLUMNS)].equals(off_meta)
    assert np.array_equal(on[~textured], off[~textured], equal_nan=True)  # other random streams untouched
    assert np.array_equal(on[:, 1], off[:, 1], equal_nan=True)  # the models are not textured

    # Background rows (stamp edges, away from the galaxy): same sigma, more correlation where textured.
    def edge_stats(cutouts):
        rows = cutouts[:, 0, :6, :].astype(np.float64)
        rows = rows - np.nanmedian(rows, axis=(1, 2), keepdims=True)
        sigma = 1.4826 * np.nanmedian(np.abs(rows), axis=(1, 2))
        lag = np.nanmean(rows[:, :, 1:] * rows[:, :, :-1], axis=(1, 2)) / np.nanmean(rows**2, axis=(1, 2))
        return sigma, lag

    whole = ~np.isnan(on[:, 0]).any(axis=(1, 2)) & ~np.isnan(off[:, 0]).any(axis=(1, 2))  # off-CCD pixels
    sigma_on, lag_on = edge_stats(on[textured & whole])
    sigma_off, lag_off = edge_stats(off[textured & whole])
    assert np.median(sigma_on / sigma_off) == pytest.approx(1.0, abs=0.08)
    wide = on_meta.noise_kernel_sigma[textured & whole].to_numpy() > 0.7
    assert np.median(lag_on[wide]) > 0.4 and abs(np.median(lag_off)) < 0.15
