"""Training: determinism on CPU, resume, checkpoints, metrics."""

import json

import pytest
import torch

from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.lumos.checkpoint import load_checkpoint, weights_sha256
from lumos_ops.lumos.train import TrainConfig, train


def _config(**kw):
    base = dict(arch="fast", epochs=2, batch_size=32, lr=1e-3, seed=3, device="cpu", progress=False, norm_sample=64)
    base.update(kw)
    return TrainConfig(**base)


def test_deterministic_and_resumable(tiny_training_set, tmp_path):
    """A 2-epoch run and a 1-epoch run resumed to 2 epochs give bit-identical weights."""
    full = train(tiny_training_set, tmp_path / "a", _config(epochs=2))
    train(tiny_training_set, tmp_path / "b", _config(epochs=1))
    resumed = train(tiny_training_set, tmp_path / "b", _config(epochs=2), resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][-1]["val_loss"] == full["history"][-1]["val_loss"]
    a = torch.load(tmp_path / "a" / "train_state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)["model"]
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert ka == kb and torch.equal(va, vb)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    assert metrics["validation"]["n"] == 24
    assert sum(metrics["validation"]["pit_hist"]) == 24


def test_checkpoint_is_verified(tiny_training_set, tmp_path):
    train(tiny_training_set, tmp_path / "m", _config(epochs=1))
    path = tmp_path / "m" / "model.pt"
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.sha256 == weights_sha256(loaded.net.state_dict())
    assert loaded.metadata["n_train"] == 72
    data = torch.load(path, weights_only=True)
    data["state_dict"]["head.bias"] += 1.0
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="SHA-256"):
        load_checkpoint(tmp_path / "bad.pt", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_config_validation():
    with pytest.raises(LumosValueError, match="arch"):
        TrainConfig(arch="nope")
    with pytest.raises(LumosValueError, match="lr"):
        TrainConfig(lr=0)
