"""Transfer learning on exposure pairs (lumos/transfer.py, lumos/pairs.py)."""

import numpy as np
import torch

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
