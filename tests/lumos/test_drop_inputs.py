"""A network made blind to its background input reads the same flux whatever the frame's sky level."""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from lumos_ops.exceptions import LumosValueError
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
from lumos_ops.lumos.config import SCALAR_NAMES
from lumos_ops.lumos.drop_inputs import drop_inputs
from lumos_ops.lumos.method import LumosMethod
from lumos_ops.lumos.model import LumosNet
from lumos_ops.measure import prepare_targets

from lumos_helpers import write_exposure


def _reading_every_input(path):
    """The shipped default's weights in a network that reads all four scalar inputs."""
    loaded = load_checkpoint("default", device="cpu")
    net = LumosNet(dataclasses.replace(loaded.net.config, inputs=SCALAR_NAMES))
    net.load_state_dict(loaded.net.state_dict())
    net.bind_normalization(loaded.normalization)
    save_checkpoint(path, net, arch=loaded.arch, normalization=loaded.normalization, metadata=loaded.metadata)
    return path


def _with_sky(src, dst, adu):
    with fits.open(src) as hdul:
        fits.PrimaryHDU(hdul[0].data + np.float32(adu), hdul[0].header).writeto(dst)
    return dst


def _fluxes(model, path, catalog):
    frame = LumosMethod(model=model).measure(prepare_targets(read_exposure(path), catalog))
    return frame["flux"].to_numpy(), frame["flux_err"].to_numpy()


def test_dropping_the_background_input_makes_the_flux_blind_to_the_sky_level(tmp_path):
    path, catalog = write_exposure(tmp_path / "e.fits", seed=5)
    brighter = _with_sky(path, tmp_path / "sky.fits", 2000.0)  # +20 e-/s per pixel, the noise unchanged
    reads = _reading_every_input(tmp_path / "reads.pt")
    flux, err = _fluxes(reads, path, catalog)
    moved, _ = _fluxes(reads, brighter, catalog)
    assert np.median(np.abs(moved - flux) / err) > 0.05  # the sky level moves a network that reads it

    keep = drop_inputs(reads, ["background"], tmp_path / "blind.pt", reason="test")
    assert keep == ("i_auto", "ccd_x", "ccd_y")
    blind_flux, blind_err = _fluxes(tmp_path / "blind.pt", path, catalog)
    blind_moved, blind_err_moved = _fluxes(tmp_path / "blind.pt", brighter, catalog)
    np.testing.assert_allclose(blind_moved, blind_flux, rtol=0, atol=1e-3 * np.median(blind_err))
    np.testing.assert_allclose(blind_err_moved, blind_err, rtol=1e-3)


def test_drop_inputs_keeps_the_weights_and_records_what_it_did(tmp_path):
    reads = _reading_every_input(tmp_path / "reads.pt")
    drop_inputs(reads, ["background", "ccd_x"], tmp_path / "blind.pt", reason="sky-subtracted frames")
    before, after = load_checkpoint(reads, device="cpu"), load_checkpoint(tmp_path / "blind.pt", device="cpu")
    assert after.sha256 == before.sha256 and after.normalization == before.normalization
    assert after.net.config.inputs == ("i_auto", "ccd_y")
    assert after.metadata["dropped_inputs"] == ["ccd_x", "background"]
    assert after.metadata["derived_from"]["inputs_dropped"] == ["background", "ccd_x"]
    assert after.metadata["derived_from"]["reason"] == "sky-subtracted frames"
    assert after.metadata["recipe"] == before.metadata["recipe"]


def test_drop_inputs_refuses_unknown_names_and_inputs_already_dropped(tmp_path):
    reads = _reading_every_input(tmp_path / "reads.pt")
    with pytest.raises(LumosValueError, match="sky"):
        drop_inputs(reads, ["sky"], tmp_path / "x.pt")
    drop_inputs(reads, ["background"], tmp_path / "blind.pt")
    with pytest.raises(LumosValueError, match="nothing to drop"):
        drop_inputs(tmp_path / "blind.pt", ["background"], tmp_path / "again.pt")
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "again.pt").exists()


def test_lumos_model_drop_input_command(tmp_path, capsys):
    from lumos_ops.cli import main

    reads = _reading_every_input(tmp_path / "reads.pt")
    assert main(["model", "drop-input", str(reads), "--input", "background", "--out", str(tmp_path / "b.pt")]) == 0
    assert "reading i_auto, ccd_x, ccd_y" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "b.pt", device="cpu").net.config.inputs == ("i_auto", "ccd_x", "ccd_y")
