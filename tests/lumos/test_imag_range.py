"""The trained i_auto range (``Normalization.imag_range``): inputs outside it get the nearest trained magnitude."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.config import Normalization
from lumos_ops.lumos.preprocess import estimate_normalization, prepare_inputs, with_imag_range
from lumos_ops.lumos.train import TrainConfig, train

from lumos_helpers import NORM


def _inputs(i_auto: np.ndarray, norm: Normalization):
    n = i_auto.size
    rng = np.random.default_rng(0)
    stamps = rng.normal(0.0, 1.0, (n, 60, 60))
    return prepare_inputs(stamps, np.zeros_like(stamps), i_auto, np.full(n, 100.0), np.full(n, 100.0),
                          np.zeros(n, int), norm)


def test_magnitudes_outside_the_trained_range_are_clipped_into_it():
    i_auto = np.array([15.0, 17.5, 20.0, 23.0, 24.5, np.nan])
    plain = _inputs(i_auto, NORM)
    clipped = _inputs(i_auto, dataclasses.replace(NORM, imag_range=(17.5, 23.0)))
    expected = (np.array([17.5, 17.5, 20.0, 23.0, 23.0]) - NORM.imag_mean) / NORM.imag_std
    assert np.allclose(clipped.scalars[:5, 0], expected, atol=1e-6)
    assert np.allclose(plain.scalars[:5, 0], (i_auto[:5] - NORM.imag_mean) / NORM.imag_std, atol=1e-6)
    assert clipped.scalars[5, 0] == 0.0 == plain.scalars[5, 0]  # a missing magnitude stays the mean
    assert np.array_equal(clipped.scalars[:, 1:], plain.scalars[:, 1:])
    assert np.array_equal(clipped.images, plain.images)


def test_the_range_is_validated_and_round_trips():
    norm = dataclasses.replace(NORM, imag_range=[17.5, 23.0])
    assert norm.imag_range == (17.5, 23.0)
    assert Normalization.from_dict(norm.to_dict()) == norm
    assert Normalization.from_dict({k: v for k, v in NORM.to_dict().items() if k != "imag_range"}).imag_range is None
    for bad in ((23.0, 17.5), (20.0, 20.0), (float("nan"), 23.0)):
        with pytest.raises(LumosValueError, match="imag_range"):
            Normalization(imag_range=bad)


def test_estimated_normalisations_record_the_range_of_every_training_magnitude():
    rng = np.random.default_rng(1)
    stamps = rng.normal(0.0, 1.0, (20, 60, 60))
    norm = estimate_normalization(stamps, np.full_like(stamps, 1e-3), np.linspace(18.0, 22.0, 20), np.full(20, 30.0),
                                  ccd_shape=(200, 300))
    assert norm.imag_range == (18.0, 22.0)
    assert with_imag_range(norm, np.array([16.0, np.nan, 24.5, 20.0])).imag_range == (16.0, 24.5)
    assert with_imag_range(norm, np.array([20.0, 20.0])).imag_range is None


def test_training_records_the_range_of_its_training_split(tiny_training_set, tmp_path):
    config = TrainConfig(arch="fast", epochs=1, batch_size=32, seed=3, device="cpu", progress=False, norm_sample=8)
    train(tiny_training_set, tmp_path / "run", config)
    norm = load_checkpoint(tmp_path / "run" / "model.pt", device="cpu").normalization
    ts = TrainingSet(tiny_training_set)
    i_auto = ts.meta["i_auto"].to_numpy()[ts.indices("train")]
    assert norm.imag_range == (i_auto.min(), i_auto.max())  # all training stamps, not the 8 of the sample
