"""Training records the band x epoch embedding of its training set (checkpoint metadata bands, n_epochs)."""

import json

import numpy as np
import pandas as pd
import pytest

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.train import TrainConfig, train
from lumos_ops.survey import BandSpec, Survey

from lumos_helpers import write_training_set

CONFIG = TrainConfig(arch="fast", epochs=1, batch_size=32, lr=1e-3, seed=3, device="cpu", progress=False,
                     norm_sample=64)


def _gri_set(path, *, in_manifest: bool):
    write_training_set(path)
    meta = pd.read_parquet(path / "meta.parquet")
    rng = np.random.default_rng(0)
    meta["band_epoch"] = rng.integers(0, 3, len(meta))
    meta["band"] = np.array(["g", "r", "i"])[meta["band_epoch"]]
    meta.to_parquet(path / "meta.parquet")
    if in_manifest:
        manifest = json.loads((path / "manifest.json").read_text())
        manifest.update(bands=["g", "r", "i"], n_epochs=1, band_wavelengths_nm={"g": 477.0, "r": 623.1, "i": 762.5})
        (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_default_embedding_is_the_paus_narrow_bands(tiny_training_set, tmp_path):
    train(tiny_training_set, tmp_path / "m", CONFIG)
    loaded = load_checkpoint(tmp_path / "m" / "model.pt", device="cpu")
    assert loaded.bands == NB_BANDS and loaded.n_epochs == 2
    assert loaded.net.config.n_band_epochs == 80


@pytest.mark.parametrize("in_manifest", [True, False])
def test_embedding_follows_the_training_set_or_survey(tmp_path, in_manifest):
    ts = _gri_set(tmp_path / "ts", in_manifest=in_manifest)
    survey = Survey(name="gri", bands=(BandSpec("g", 477.0), BandSpec("r", 623.1), BandSpec("i", 762.5)), source="gri.json")
    train(ts, tmp_path / "m", CONFIG, survey=None if in_manifest else survey)
    loaded = load_checkpoint(tmp_path / "m" / "model.pt", device="cpu")
    assert loaded.bands == ("g", "r", "i") and loaded.n_epochs == 1
    assert loaded.net.config.n_band_epochs == 3
    assert loaded.band_wavelengths_nm() == {"g": 477.0, "r": 623.1, "i": 762.5}
    assert loaded.trained_band_epochs == {0, 1, 2}
    assert [loaded.band_epoch_row(b, 0) for b in ("g", "r", "i")] == [0, 1, 2]


def test_rows_beyond_the_embedding_are_refused(tmp_path):
    ts = _gri_set(tmp_path / "ts", in_manifest=True)
    meta = pd.read_parquet(ts / "meta.parquet")
    meta.loc[0, "band_epoch"] = 5
    meta.to_parquet(ts / "meta.parquet")
    with pytest.raises(LumosValueError, match=r"ts: band_epoch rows 0\.\.\.5 exceed the 3 bands x 1 epochs"):
        train(ts, tmp_path / "m", CONFIG)
