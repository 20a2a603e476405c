"""Band x epoch embedding rows as a property of the model (checkpoint metadata bands, n_epochs)."""

import numpy as np
import pytest
import torch
from astropy.io import fits

from lumos_ops.constants import NB_BANDS, band_epoch_index
from lumos_ops.exceptions import ModelError
from lumos_ops.flags import Flag
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
from lumos_ops.lumos.method import LumosMethod
from lumos_ops.lumos.model import get_model
from lumos_ops.measure import prepare_targets
from lumos_ops.survey import BandSpec, Survey, paus_survey

from lumos_helpers import NORM, write_exposure

GRI = {"bands": ["g", "r", "i"], "n_epochs": 1, "band_wavelengths_nm": {"g": 477.0, "r": 623.1, "i": 762.5},
       "truncation_imag": 20.5}


def _gri_model(path, **metadata):
    torch.manual_seed(0)
    save_checkpoint(path, get_model("fast", n_band_epochs=3).eval(), arch="fast", normalization=NORM,
                    metadata={**GRI, **metadata})
    return path


def test_legacy_checkpoint_rows_are_the_paus_narrow_band_rows():
    loaded = load_checkpoint(None, device="cpu")
    assert loaded.bands == NB_BANDS and loaded.n_epochs == 2
    assert all(loaded.band_epoch_row(b, e) == band_epoch_index(b, e) for b in NB_BANDS for e in (0, 1))
    assert loaded.band_epoch_row("r", 0) is None and loaded.band_epoch_row("NB685", 2) is None
    # 630 nm lies between NB625 and NB635: the bluer (first) one wins the tie
    assert loaded.nearest_band_epoch_row(630.0, 1) == band_epoch_index("NB625", 1)
    assert loaded.nearest_band_epoch_row(900.0, 5) == band_epoch_index("NB845", 1)


def test_paus_survey_rows_match_the_shipped_embedding():
    survey = paus_survey()
    assert all(survey.embedding_row(b, e) == band_epoch_index(b, e) for b in NB_BANDS for e in (0, 1))


def test_recorded_bands_define_the_rows(tmp_path):
    loaded = load_checkpoint(_gri_model(tmp_path / "gri.pt", trained_band_epochs=[0, 1]), device="cpu")
    assert loaded.bands == ("g", "r", "i") and loaded.n_epochs == 1
    assert [loaded.band_epoch_row(b, 0) for b in ("g", "r", "i", "z")] == [0, 1, 2, None]
    assert loaded.band_epoch_row("g", 1) is None
    assert loaded.nearest_band_epoch_row(685.0, 0) == 1  # r (623 nm) is nearer than i (762 nm)


def test_inconsistent_band_metadata_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    save_checkpoint(path, get_model("fast", n_band_epochs=3).eval(), arch="fast", normalization=NORM,
                    metadata={"bands": ["g", "r"], "n_epochs": 1})
    with pytest.raises(ModelError, match=r"bad.pt: metadata bands \(2\) x n_epochs \(1\) = 2 .* network has 3"):
        load_checkpoint(path, device="cpu")


def test_band_the_model_lacks_borrows_the_nearest_row_and_is_flagged(tmp_path, caplog):
    """A PAUS NB685 exposure measured by a g r i model: row of r, finite fluxes, every target flagged."""
    path, catalog = write_exposure(tmp_path / "nb685.fits", seed=2)
    exposure = read_exposure(path)
    method = LumosMethod(model=_gri_model(tmp_path / "gri.pt", trained_band_epochs=[0, 1, 2]), device="cpu")
    assert method._band_epoch_row(method.loaded, exposure) == (1, False)
    frame = method.measure(prepare_targets(exposure, catalog))
    assert ((frame["flag"].to_numpy() & int(Flag.UNTRAINED_BAND)) != 0).all()
    assert np.isfinite(frame["flux"]).all()
    assert "UNTRAINED_BAND" in caplog.text


def test_band_the_model_knows_is_measured_in_its_row(tmp_path):
    survey = Survey(name="gri", bands=(BandSpec("g", 477.0), BandSpec("r", 623.1), BandSpec("i", 762.5)),
                    source="gri.json")
    path, catalog = write_exposure(tmp_path / "i.fits", seed=3, band="i")
    fits_epoch0 = tmp_path / "i0.fits"
    with fits.open(path) as hdul:
        hdul[0].header["EPOCH"] = 0
        hdul.writeto(fits_epoch0)
    exposure = read_exposure(fits_epoch0, survey=survey)
    method = LumosMethod(model=_gri_model(tmp_path / "gri.pt", trained_band_epochs=[2]), device="cpu")
    assert method._band_epoch_row(method.loaded, exposure) == (2, True)
    frame = method.measure(prepare_targets(exposure, catalog))
    assert ((frame["flag"].to_numpy() & int(Flag.UNTRAINED_BAND)) == 0).all()
