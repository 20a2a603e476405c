"""Transfer learning on exposure pairs (lumos/transfer.py, lumos/pairs.py)."""

import json
import os

import numpy as np
import pytest
import torch

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.pairs import make_pairs
from lumos_ops.lumos.transfer import TransferConfig, transfer


def test_transfer_trains_only_the_last_layer(checkpoint, survey, tiny_training_set, tmp_path):
    paths, catalog, _ = survey
    config = TransferConfig(epochs=1, batch_size=8, device="cpu", progress=False, seed=1)
    metrics = transfer(checkpoint, paths, catalog, tiny_training_set, tmp_path, config)
    assert metrics["n_pairs"] == 23
    assert np.isfinite(metrics["d_sigma68_before"]) and np.isfinite(metrics["d_sigma68_after"])
    before = load_checkpoint(checkpoint, device="cpu").net.state_dict()
    after_model = load_checkpoint(tmp_path / "model.pt", device="cpu")
    after = after_model.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}
    assert after_model.metadata["transfer"]["n_pairs"] == 23


def test_make_pairs_needs_distinct_exposures():
    import pandas as pd

    table = pd.DataFrame({"ref_id": [1, 1, 1, 2], "band": ["NB455"] * 4, "exposure": ["a", "a", "b", "a"]})
    assert make_pairs(table).tolist() == [[0, 2], [1, 2]]
    assert make_pairs(table, max_pairs=1, seed=0).shape == (1, 2)


def _transfer_config(**kw):
    return TransferConfig(**{"epochs": 1, "batch_size": 8, "device": "cpu", "progress": False, "seed": 1, **kw})


def test_transfer_reads_the_centre_of_larger_simulated_stamps(checkpoint, survey, tiny_training_set, tmp_path, capsys):
    """96-px simulated stamps whose central 60 px are the tiny set's give the same transfer; the
    progress bar is shown unless ``progress`` is off (``lumos transfer -q``)."""
    from lumos_helpers import resized_set

    paths, catalog, _ = survey
    big = resized_set(tiny_training_set, tmp_path / "big", 96)
    plain = transfer(checkpoint, paths, catalog, tiny_training_set, tmp_path / "plain", _transfer_config())
    assert "transfer epoch 1/1" not in capsys.readouterr().err
    cropped = transfer(checkpoint, paths, catalog, big, tmp_path / "cropped", _transfer_config(progress=True))
    assert "transfer epoch 1/1" in capsys.readouterr().err
    assert cropped["history"] == plain["history"] and cropped["model_sha256"] == plain["model_sha256"]


def test_transfer_refuses_bad_outputs_and_small_stamps(checkpoint, survey, tiny_training_set, tmp_path):
    from lumos_helpers import resized_set

    paths, catalog, _ = survey
    (tmp_path / "file").write_text("x")
    with pytest.raises(LumosValueError, match="exists and is not a directory"):
        transfer(checkpoint, paths, catalog, tiny_training_set, tmp_path / "file", _transfer_config())
    small = resized_set(tiny_training_set, tmp_path / "small", 40)
    with pytest.raises(LumosValueError, match="stamps are 40 px, the network needs 60 px"):
        transfer(checkpoint, paths, catalog, small, tmp_path / "out", _transfer_config())
    assert not (tmp_path / "out").exists()


def test_transfer_metrics_are_replaced_atomically(checkpoint, survey, tiny_training_set, tmp_path):
    paths, catalog, _ = survey
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}')
    os.link(out / "metrics.json", tmp_path / "reader.json")
    metrics = transfer(checkpoint, paths, catalog, tiny_training_set, out, _transfer_config())
    assert json.loads((tmp_path / "reader.json").read_text()) == {"old": True}
    assert json.loads((out / "metrics.json").read_text())["model_sha256"] == metrics["model_sha256"]


def test_transfer_reads_the_sim_set_by_band_name(checkpoint, survey, tiny_training_set, tmp_path):
    """A simulated set of bands the model lacks is one error (its band_epoch counts another survey's
    bands); a likelihood model needs a set drawn under a reference prior."""
    import pandas as pd

    from lumos_helpers import resized_set

    paths, catalog, _ = survey
    other = resized_set(tiny_training_set, tmp_path / "sdss", 60)
    table = pd.read_parquet(other / "meta.parquet")
    table["band"], table["epoch"], table["band_epoch"] = "r", 0, 1
    table.to_parquet(other / "meta.parquet")
    with pytest.raises(LumosValueError, match="no embedding row for r epoch 0"):
        transfer(checkpoint, paths, catalog, other, tmp_path / "out", _transfer_config())
