"""The shared pixel arithmetic of the optimal sum, the profile fit and the error calibration gives
the numbers of the plain code it replaced, bit for bit.

Pinned: the gathering of the footprint pixels by flat index (``fit_pixels``), the chi-square and
the weighted estimate in the work arrays of ``FitPixels`` (any row selection, calls in any order),
the in-place background share of the variance (``noise_calibration.background_fraction``) and the
footprint flags from the footprint pixels alone. Each plain version is the code before the change.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

from lumos_ops.flags import Flag
from lumos_ops.noise_calibration import background_fraction
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.modelfit import FitPixels, fit_pixels, poisson_chi2
from lumos_ops.photometry.quality import bounding_box, footprint_flags, model_footprint


def _inputs(noisy_stamps: Callable[..., tuple[np.ndarray, ...]], n: int, seed: int) -> PhotometryInputs:
    """Stamps with NaN holes, pixels off the chip, saturated pixels and one target off the image."""
    data, model, _, dx, dy = noisy_stamps(n, size=48, seed=seed)
    rng = np.random.default_rng(seed)
    data[1, 20:27, 22:30] = np.nan
    data[2, :, :3] = np.nan
    data[3, 24, 24] = 1e6
    on_chip = np.ones(data.shape, dtype=bool)
    on_chip[4, :10] = False
    on_chip[5, :, 26:] = False
    measurable = rng.random(n) > 0.1
    measurable[:6] = True
    return PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0, on_chip=on_chip, saturate=5e5,
                                        measurable=measurable)


def _plain_fit_pixels(inputs: PhotometryInputs, light: float) -> tuple[np.ndarray, np.ndarray]:
    footprint = model_footprint(inputs.model, light=light)
    n = inputs.n
    rows, cols = bounding_box(footprint.any(axis=0))
    data = inputs.data[:, rows, cols].reshape(n, -1)
    use = footprint[:, rows, cols].reshape(n, -1) & np.isfinite(data)
    target, pixel = np.nonzero(use)
    counts = np.bincount(target, minlength=n)
    k = max(int(counts.max(initial=0)), 1)
    column = np.arange(target.size) - np.repeat(np.cumsum(counts) - counts, counts)
    signal = np.zeros((n, k))
    model = np.zeros((n, k))
    signal[target, column] = data[target, pixel] - inputs.background.mean[target]
    model[target, column] = inputs.model[:, rows, cols].reshape(n, -1)[target, pixel]
    signal[np.isnan(signal)] = 0.0
    return signal, model


def _plain_chi2(pixels: FitPixels, flux: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
    signal_model = flux[:, None] * pixels.model[index]
    residual = pixels.signal[index] - signal_model
    residual *= residual
    variance = np.maximum(signal_model, 0.0)
    variance /= pixels.exptime[index, None]
    variance += pixels.noise_var[index, None]
    residual /= variance
    return np.sum(residual, axis=1)


def _plain_variance(pixels: FitPixels, flux: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
    source = np.maximum(flux[:, None] * pixels.model[index], 0.0)
    source /= pixels.exptime[index, None]
    source += pixels.noise_var[index, None]
    return source


def _plain_estimate(pixels: FitPixels, variance: np.ndarray, index: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
    model_model, model_signal = pixels.model * pixels.model, pixels.model * pixels.signal
    fisher = np.sum(model_model[index] / variance, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.sum(model_signal[index] / variance, axis=1) / fisher
        leverage = np.sum(pixels.model[index] / variance, axis=1) / fisher
        return flux, np.sqrt(1.0 / fisher + pixels.background_var[index] * leverage**2)


def _plain_background_fraction(pixels: FitPixels, flux: np.ndarray) -> np.ndarray:
    flux = np.nan_to_num(np.asarray(flux, dtype=np.float64), nan=0.0)
    phi = np.full(flux.shape, np.nan)
    for rows, sub in pixels.groups(np.arange(flux.size), 128):
        source = np.maximum(flux[rows, None] * sub.model, 0.0) / sub.exptime[:, None]
        variance = source + sub.noise_var[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.where(sub.model > 0, sub.model / variance, 0.0)
            w = raw / np.sum(raw * sub.model, axis=1, keepdims=True)
            w2 = w * w
            bkg = np.sum(w2, axis=1) * sub.noise_var + sub.background_var * np.sum(w, axis=1) ** 2
            src = np.sum(np.multiply(w2, source, out=w2), axis=1)
            phi[rows] = bkg / (bkg + src)
    return np.where(np.isfinite(phi), np.clip(phi, 0.0, 1.0), 1.0)


def _plain_footprint_flags(inputs: PhotometryInputs, footprint: np.ndarray) -> np.ndarray:
    flags = np.zeros(inputs.n, dtype=np.int64)
    rows, cols = bounding_box(footprint.any(axis=0))
    footprint = footprint[:, rows, cols]
    data = inputs.data[:, rows, cols]
    off_chip = np.zeros(footprint.shape, dtype=bool) if inputs.on_chip is None else ~inputs.on_chip[:, rows, cols]
    nan = np.isnan(data)
    flags[(footprint & off_chip).any(axis=(1, 2))] |= Flag.EDGE
    flags[(footprint & nan & ~off_chip).any(axis=(1, 2))] |= Flag.MASKED
    flags[(footprint & (data >= inputs.saturate[:, None, None])).any(axis=(1, 2))] |= Flag.SATURATED
    flags[inputs.background.incomplete] |= Flag.ANNULUS_INCOMPLETE
    flags[~inputs.measurable] = Flag.OFF_IMAGE
    return flags


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("light", [0.5, 0.99, 1.0])
def test_fit_pixels_gathered_by_flat_index(noisy_stamps: Callable[..., tuple[np.ndarray, ...]], seed: int,
                                           light: float) -> None:
    inputs = _inputs(noisy_stamps, 12, seed)
    signal, model = _plain_fit_pixels(inputs, light)
    pixels = fit_pixels(inputs, light=light)
    assert np.array_equal(pixels.signal, signal) and np.array_equal(pixels.model, model)
    assert pixels.signal.tobytes() == signal.tobytes()


def _selections(rows: int, rng: np.random.Generator) -> list[np.ndarray | slice]:
    """Every row in order (as a slice and as integers), reversed, a random subset, a mask, a slice."""
    every = np.arange(rows)
    return [slice(None), every, every[::-1], rng.permutation(rows)[: max(1, rows // 2)], rng.random(rows) > 0.5,
            slice(1, rows)]


def test_chi2_and_estimates_in_the_work_arrays(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    inputs = _inputs(noisy_stamps, 12, 3)
    pixels = fit_pixels(inputs)
    rng = np.random.default_rng(4)
    subsets = [(np.arange(12), pixels), *pixels.groups(np.arange(12), 5)]
    for _, sub in subsets:
        rows = sub.model.shape[0]
        for index in _selections(rows, rng) * 2:  # twice: the work arrays hold the previous call's numbers
            m = np.arange(rows)[index].size
            flux = rng.uniform(-20.0, 300.0, m)
            assert np.array_equal(poisson_chi2(sub, flux, index), _plain_chi2(sub, flux, index))
            assert np.array_equal(sub.variance(flux, index), _plain_variance(sub, flux, index))
            variance = sub.variance(flux, index, scratch=True)
            expected = _plain_estimate(sub, _plain_variance(sub, flux, index), index)
            for got, want in zip(sub.weighted_estimate(variance, index), expected):
                assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("exptime", [90.0, "per row"])
def test_chi2_and_variance_skip_passes_only_where_exact(noisy_stamps: Callable[..., tuple[np.ndarray, ...]],
                                                       exptime: float | str) -> None:
    """No max(F R, 0) pass for fluxes >= 0 (with -0, inf), the scalar division for a shared exposure time."""
    data, model, _, dx, dy = noisy_stamps(9, size=48, seed=11)
    times = np.linspace(30.0, 300.0, 9) if exptime == "per row" else exptime
    pixels = fit_pixels(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=times))
    rng = np.random.default_rng(12)
    negative_model = FitPixels(signal=pixels.signal, model=pixels.model - 1e-3, noise_var=pixels.noise_var,
                               background_var=pixels.background_var, exptime=pixels.exptime, footprint=None)
    no_noise = FitPixels(signal=pixels.signal, model=pixels.model, noise_var=np.where(np.arange(9) == 4, 0.0, pixels.noise_var),
                         background_var=pixels.background_var, exptime=pixels.exptime, footprint=None)
    for sub in (pixels, negative_model, no_noise):
        for flux in (rng.uniform(0.0, 50.0, 9), np.r_[-0.0, 0.0, np.inf, rng.uniform(0.0, 5.0, 6)],
                     np.r_[np.nan, rng.uniform(0.0, 5.0, 8)], rng.uniform(-5.0, 5.0, 9)):
            for index in (slice(None), np.array([8, 0, 3])):
                f = flux[index]
                with np.errstate(invalid="ignore", divide="ignore"):
                    assert np.array_equal(poisson_chi2(sub, f, index), _plain_chi2(sub, f, index), equal_nan=True)
                    assert np.array_equal(sub.variance(f, index), _plain_variance(sub, f, index), equal_nan=True)
                    assert sub.variance(f, index).tobytes() == _plain_variance(sub, f, index).tobytes()


def test_row_numbers_index_as_numpy_does(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    pixels = fit_pixels(_inputs(noisy_stamps, 6, 13))
    flux = np.array([3.0, 40.0])
    index = np.array([-1, -6])
    assert np.array_equal(poisson_chi2(pixels, flux, index), _plain_chi2(pixels, flux, index))
    for bad in (np.array([6]), np.array([-7])):
        with pytest.raises(IndexError):
            poisson_chi2(pixels, flux[:1], bad)
        with pytest.raises(IndexError):
            pixels.weighted_estimate(np.ones((1, pixels.model.shape[1])), bad)


def test_groups_carry_no_footprint(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    inputs = _inputs(noisy_stamps, 6, 5)
    _, sub = next(fit_pixels(inputs).groups(np.arange(6), 4))
    assert sub.footprint is None
    with pytest.raises(ValueError, match="footprint"):
        sub.flags(inputs)


@pytest.mark.parametrize("seed", [6, 7])
def test_background_fraction_in_place(noisy_stamps: Callable[..., tuple[np.ndarray, ...]], seed: int) -> None:
    inputs = _inputs(noisy_stamps, 140, seed)
    pixels = fit_pixels(inputs)
    flux = np.random.default_rng(seed).uniform(-10.0, 400.0, 140)
    flux[[0, 5]] = np.nan
    ctx = SimpleNamespace(photometry_inputs=inputs)
    assert np.array_equal(background_fraction(ctx, flux), _plain_background_fraction(pixels, flux))


@pytest.mark.parametrize("seed", [8, 9])
def test_footprint_flags_from_the_footprint_pixels(noisy_stamps: Callable[..., tuple[np.ndarray, ...]], seed: int) -> None:
    inputs = _inputs(noisy_stamps, 12, seed)
    for footprint in (fit_pixels(inputs).footprint, np.random.default_rng(seed).random(inputs.data.shape) > 0.97,
                      np.zeros(inputs.data.shape, dtype=bool)):
        assert np.array_equal(footprint_flags(inputs, footprint), _plain_footprint_flags(inputs, footprint))
    flags = footprint_flags(inputs, fit_pixels(inputs).footprint)
    assert flags[1] & Flag.MASKED and flags[3] & Flag.SATURATED and flags[5] & Flag.EDGE


def _plain_model_footprint(model: np.ndarray, light: float) -> np.ndarray:
    n = model.shape[0]
    out = np.zeros(model.shape, dtype=bool)
    rows, cols = bounding_box((model != 0).any(axis=0))
    box = model[:, rows, cols]
    flat = box.reshape(n, -1)
    if not np.isfinite(flat).all():
        flat = np.nan_to_num(flat, nan=0.0)
    descending = np.sort(flat, axis=1)[:, ::-1].astype(np.float64)
    cum = np.cumsum(descending, axis=1)
    total = cum[:, -1:].copy() if cum.shape[1] else np.zeros((n, 1))
    before = np.subtract(cum, descending, out=cum)
    needed = np.maximum((before < light * total).sum(axis=1), 1)
    threshold = descending[np.arange(n), needed - 1] if cum.shape[1] else np.zeros(n)
    keep = (flat >= threshold[:, None].astype(flat.dtype)) & (flat > 0)
    out[:, rows, cols] = keep.reshape(box.shape)
    return out


@pytest.mark.parametrize("n", [1, 64, 65, 150])
def test_model_footprint_in_blocks(n: int) -> None:
    rng = np.random.default_rng(n)
    models = np.zeros((n, 40, 40), dtype=np.float32)
    models[:, 6:35, 8:33] = (rng.exponential(size=(n, 29, 25)) ** 3 - 0.05).astype(np.float32)
    models[n - 1, 20, 20] = np.nan
    models[n // 2, 10:12] = 0.0
    for light in (0.5, 0.99, 1.0):
        assert np.array_equal(model_footprint(models, light=light), _plain_model_footprint(models, light))
