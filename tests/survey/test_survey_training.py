"""A model for another survey: TEAHUPOO on its real frames under --survey, trained, measuring its band."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from survey_paths import SDSS_SURVEY, realdata_frame

from lumos_ops.cli import main
from lumos_ops.flags import Flag
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.survey import load_survey


@pytest.mark.slow
def test_sdss_training_set_trains_a_g_r_i_model(sdss_catalog, tmp_path):
    frames = [str(realdata_frame(f"sdss_{b}.fits.bz2")) for b in "gri"]
    ts, model = tmp_path / "ts", tmp_path / "model"
    (tmp_path / "frames").mkdir()
    for frame in frames:
        (tmp_path / "frames" / frame.rsplit("/", 1)[1]).symlink_to(frame)
    assert main(["simulate", "training-set", "--exposures", str(tmp_path / "frames" / "*.fits.bz2"), "--catalog",
                 str(sdss_catalog), "--out", str(ts), "--n-stamps", "100", "--survey", str(SDSS_SURVEY), "-q"]) == 0
    assert load_survey(ts / "survey.json").to_dict() == load_survey(SDSS_SURVEY).to_dict()
    # the galaxies and their models are drawn at the survey's pixel scale, not PAUS's 0.263 arcsec
    assert json.loads((ts / "manifest.json").read_text())["pixel_scale"] == load_survey(SDSS_SURVEY).pixel_scale != 0.263
    meta = pd.read_parquet(ts / "meta.parquet")
    assert set(meta["band"]) == {"g"} and set(meta["band_epoch"]) == {0}  # the three frames all say FILTER='g'
    assert main(["train", "--training-set", str(ts), "--out", str(model), "--epochs", "1", "--batch-size", "16",
                 "--device", "cpu", "--threads", "1", "-q"]) == 0
    loaded = load_checkpoint(model / "model.pt", device="cpu")
    assert loaded.bands == ("g", "r", "i") and loaded.n_epochs == 1 and loaded.net.config.n_band_epochs == 3
    assert loaded.trained_band_epochs == {0}
    out = tmp_path / "lumos.parquet"
    assert main(["measure", frames[0], str(sdss_catalog), "--survey", str(SDSS_SURVEY), "--method", "lumos",
                 "--model", str(model / "model.pt"), "--out", str(out), "--no-progress"]) == 0
    table = pd.read_parquet(out)
    assert ((table["flag"] & int(Flag.UNTRAINED_BAND)) == 0).all() and np.isfinite(table["flux"]).all()
