"""Training: determinism on CPU, resume, checkpoints, metrics."""

import json

import pytest
import torch

from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint, weights_sha256
from lumos_ops.lumos.model import get_model
from lumos_ops.lumos.train import TrainConfig, freeze_batchnorm, train


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


def test_history_records_the_learning_rate_each_epoch_trained_with(tiny_training_set, tmp_path):
    """StepLR divides the rate after epoch 1: epoch 1 trained at ``lr``, epoch 2 at ``lr * lr_gamma``."""
    metrics = train(tiny_training_set, tmp_path / "m", _config(epochs=2, lr=1e-3, lr_step=1, lr_gamma=0.5))
    assert [h["lr"] for h in metrics["history"]] == pytest.approx([1e-3, 5e-4])


def test_checkpoint_is_verified(tiny_training_set, tmp_path):
    train(tiny_training_set, tmp_path / "m", _config(epochs=1))
    path = tmp_path / "m" / "model.pt"
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.sha256 == weights_sha256(loaded.net.state_dict())
    ts = TrainingSet(tiny_training_set)
    seen = set(ts.meta["band_epoch"].to_numpy()[ts.indices("train")].tolist())
    assert loaded.trained_band_epochs == seen and len(seen) >= 1
    fwhm_px = ts.meta["psf_fwhm"].to_numpy()[ts.indices("train")] / ts.manifest["pixel_scale"]
    lo, hi = loaded.trained_psf_fwhm_px
    assert fwhm_px.min() - 1e-3 <= lo <= hi <= fwhm_px.max() + 1e-3 and lo > 0
    assert loaded.metadata["n_train"] == 72
    data = torch.load(path, weights_only=True)
    data["state_dict"]["head.bias"] += 1.0
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="SHA-256"):
        load_checkpoint(tmp_path / "bad.pt", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_frozen_batchnorm_epochs_keep_running_statistics(tiny_training_set, tmp_path):
    """The frozen last epoch learns every weight but leaves BatchNorm's running statistics as they were."""
    first = train(tiny_training_set, tmp_path / "one", _config(epochs=1))
    frozen = train(tiny_training_set, tmp_path / "two", _config(epochs=2, frozen_bn_epochs=1))
    assert [h["frozen_bn"] for h in first["history"]] == [False]
    assert [h["frozen_bn"] for h in frozen["history"]] == [False, True]
    after_one = torch.load(tmp_path / "one" / "train_state.pt", weights_only=True)["model"]
    after_two = torch.load(tmp_path / "two" / "train_state.pt", weights_only=True)["model"]
    stats = [k for k in after_one if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 15  # 5 BatchNorm layers of the "fast" network
    for key in stats:
        assert torch.equal(after_one[key], after_two[key]), key
    learnt = [k for k in after_one if k not in stats]
    assert all(not torch.equal(after_one[k], after_two[k]) for k in learnt if k.startswith(("features", "head")))
    assert torch.load(tmp_path / "two" / "train_state.pt", weights_only=True)["epoch"] == 2


def test_fine_tuning_starts_from_the_initial_checkpoint(tiny_training_set, tmp_path):
    """init_model: the first epoch starts from the given weights, statistics and normalisation (not from the seed)."""
    train(tiny_training_set, tmp_path / "base", _config(epochs=1, seed=3))
    base = load_checkpoint(tmp_path / "base" / "model.pt", device="cpu")
    tuned = train(tiny_training_set, tmp_path / "tuned",
                  _config(epochs=1, seed=9, lr=1e-9, frozen_bn_epochs=1, init_model=str(tmp_path / "base" / "model.pt")))
    fresh = train(tiny_training_set, tmp_path / "fresh", _config(epochs=1, seed=9, lr=1e-9, frozen_bn_epochs=1))
    after = load_checkpoint(tmp_path / "tuned" / "model.pt", device="cpu")
    assert tuned["init_model"] == {"path": str((tmp_path / "base" / "model.pt").resolve()), "sha256": base.sha256}
    assert after.normalization == base.normalization
    for key, value in base.net.state_dict().items():
        assert torch.allclose(after.net.state_dict()[key].double(), value.double(), atol=1e-6), key
    assert "init_model" not in fresh
    assert fresh["history"][0]["val_loss"] != pytest.approx(base.metadata["val_loss"], rel=1e-3)
    assert tuned["history"][0]["val_loss"] == pytest.approx(base.metadata["val_loss"], rel=1e-3)


def test_fine_tuning_may_drop_an_input(tiny_training_set, tmp_path):
    """init_model with more inputs than the training: every weight carried over, the dropped input ignored."""
    train(tiny_training_set, tmp_path / "base", _config(epochs=1, seed=3))
    base = load_checkpoint(tmp_path / "base" / "model.pt", device="cpu")
    train(tiny_training_set, tmp_path / "tuned", _config(epochs=1, seed=9, lr=1e-9, frozen_bn_epochs=1,
                                                         drop_inputs=("background",),
                                                         init_model=str(tmp_path / "base" / "model.pt")))
    after = load_checkpoint(tmp_path / "tuned" / "model.pt", device="cpu")
    assert after.net.config.inputs == ("i_auto", "ccd_x", "ccd_y")
    for key, value in base.net.state_dict().items():
        assert torch.allclose(after.net.state_dict()[key].double(), value.double(), atol=1e-6), key
    after.net.eval()
    images, band_epoch = torch.randn(4, 2, 60, 60), torch.zeros(4, dtype=torch.long)
    scalars = torch.randn(4, 4)
    shifted = scalars.clone()
    shifted[:, 3] += 5.0
    with torch.no_grad():
        assert torch.equal(after.net(images, scalars, band_epoch).mu, after.net(images, shifted, band_epoch).mu)
        base.net.eval()
        assert not torch.equal(base.net(images, scalars, band_epoch).mu, base.net(images, shifted, band_epoch).mu)
    # a fine-tuning of the blind network stays blind without being told
    train(tiny_training_set, tmp_path / "again", _config(epochs=1, init_model=str(tmp_path / "tuned" / "model.pt")))
    assert load_checkpoint(tmp_path / "again" / "model.pt", device="cpu").net.config.inputs == ("i_auto", "ccd_x", "ccd_y")


def test_fine_tuning_may_change_the_stamp_background(tiny_training_set, tmp_path):
    """The checkpoint records the background its network was tuned with; the init model's is kept by default."""
    train(tiny_training_set, tmp_path / "base", _config(epochs=1, seed=3))
    base = load_checkpoint(tmp_path / "base" / "model.pt", device="cpu")
    assert base.normalization.stamp_background == "median"
    train(tiny_training_set, tmp_path / "kept", _config(epochs=1, seed=9, init_model=str(tmp_path / "base" / "model.pt")))
    assert load_checkpoint(tmp_path / "kept" / "model.pt", device="cpu").normalization == base.normalization
    train(tiny_training_set, tmp_path / "masked", _config(epochs=1, seed=9, stamp_background="masked_annulus",
                                                          init_model=str(tmp_path / "base" / "model.pt")))
    norm = load_checkpoint(tmp_path / "masked" / "model.pt", device="cpu").normalization
    assert norm.stamp_background == "masked_annulus"
    assert norm.pixel_scale == base.normalization.pixel_scale and norm.flux_scale == base.normalization.flux_scale
    with pytest.raises(LumosValueError, match="stamp_background"):
        _config(stamp_background="mode")


def test_freeze_batchnorm_makes_outputs_batch_independent():
    torch.manual_seed(1)
    net = get_model("fast")
    images, scalars, band_epoch = torch.randn(8, 2, 60, 60), torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    images[4:] *= 20.0  # a batch with bright stamps changes per-batch statistics
    net.train()
    assert freeze_batchnorm(net) == 5
    before = net.features[2].running_mean.clone()
    with torch.no_grad():
        together = net(images, scalars, band_epoch).mu[:4]
        alone = net(images[:4], scalars[:4], band_epoch[:4]).mu
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.equal(net.features[2].running_mean, before)
    assert net.hidden.training and not net.features[2].training


def test_config_validation():
    with pytest.raises(LumosValueError, match="frozen_bn_epochs"):
        TrainConfig(epochs=2, frozen_bn_epochs=3)
    with pytest.raises(LumosValueError, match="arch"):
        TrainConfig(arch="nope")
    with pytest.raises(LumosValueError, match="lr"):
        TrainConfig(lr=0)


def test_balanced_weights_change_the_reference_prior_loss(tiny_training_set, tmp_path):
    """On a reference-prior set ``balanced_weights`` weights the loss by ``g(f_hat) / g(f)``: the
    epoch-0 validation loss of the same initial weights differs from the importance-weighted one,
    and the checkpoint records the setting."""
    import shutil

    from lumos_ops.flux_prior import ReferencePrior

    ts_dir = tmp_path / "set"
    shutil.copytree(tiny_training_set, ts_dir)
    manifest = json.loads((ts_dir / "manifest.json").read_text())
    manifest["config"] = {"flux_source": "reference_prior",
                          "flux_prior": ReferencePrior(low=-50.0, high=3000.0, asinh_scale=20.0).to_dict()}
    (ts_dir / "manifest.json").write_text(json.dumps(manifest))
    plain = train(ts_dir, tmp_path / "plain", _config(epochs=1))
    balanced = train(ts_dir, tmp_path / "balanced", _config(epochs=1, balanced_weights=True))
    assert plain["history"][0]["val_loss"] != pytest.approx(balanced["history"][0]["val_loss"], rel=1e-3)
    model = load_checkpoint(tmp_path / "balanced" / "model.pt", device="cpu")
    assert model.metadata["train_config"]["balanced_weights"] is True and model.is_likelihood


def _state(path):
    return torch.load(path / "train_state.pt", weights_only=True)


@pytest.fixture(scope="module")
def one_epoch_run(tiny_training_set, tmp_path_factory):
    """OUT of a 1-epoch run on the tiny set (``_config``), to be resumed; tests must leave it as it is."""
    out = tmp_path_factory.mktemp("one-epoch")
    train(tiny_training_set, out, _config(epochs=1))
    return out


@pytest.mark.parametrize("change", [
    {"lr": 1e-2}, {"lr_step": 1}, {"lr_gamma": 0.5}, {"batch_size": 16}, {"seed": 4}, {"drop_inputs": ("i_auto",)},
    {"max_train": 40}, {"max_val": 10}, {"norm_sample": 32}, {"ccd_shape": (100, 100)}, {"frozen_bn_epochs": 1},
    {"amp": False},
])
def test_resume_refuses_other_settings(change, tiny_training_set, one_epoch_run):
    """A resumed run trains on as saved: any setting that shapes the weights must be the saved run's,
    and the refusal names it and leaves the run as it was."""
    out = one_epoch_run
    before = _state(out)
    name = next(iter(change))
    with pytest.raises(LumosValueError, match=rf"train_state.pt: the saved run was trained with other settings \({name} .*new --out"):
        train(tiny_training_set, out, _config(epochs=2, **change), resume=True)
    assert _state(out)["epoch"] == 1 and _state(out)["history"] == before["history"]


def test_resume_refuses_another_training_set(one_epoch_run, tmp_path):
    from lumos_helpers import write_training_set

    other = write_training_set(tmp_path / "other", seed=1)
    with pytest.raises(LumosValueError, match=r"training set .* -> .*other \(another manifest.json\)"):
        train(other, one_epoch_run, _config(epochs=2), resume=True)
    assert _state(one_epoch_run)["epoch"] == 1


def test_resume_may_change_how_it_runs(tiny_training_set, tmp_path):
    """Device, threads and progress bars do not shape the weights: a resumed run may change them."""
    train(tiny_training_set, tmp_path / "run", _config(epochs=1))
    resumed = train(tiny_training_set, tmp_path / "run", _config(epochs=2, device=None, progress=True,
                                                                 num_threads=torch.get_num_threads()), resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and resumed["epochs"] == 2


def test_resume_knows_an_init_model_by_its_weights_not_its_path(tiny_training_set, tmp_path):
    """The same initial weights spelled by another path (a copy on another node, another working
    folder) resume; other weights are refused."""
    import shutil

    train(tiny_training_set, tmp_path / "base", _config(epochs=1))
    train(tiny_training_set, tmp_path / "other", _config(epochs=1, seed=5))
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "base" / "model.pt", tmp_path / "copy" / "model.pt")
    train(tiny_training_set, tmp_path / "run", _config(epochs=1, init_model=str(tmp_path / "base" / "model.pt")))
    resumed = train(tiny_training_set, tmp_path / "run",
                    _config(epochs=2, init_model=str(tmp_path / "copy" / "model.pt")), resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    with pytest.raises(LumosValueError, match="init_model"):
        train(tiny_training_set, tmp_path / "run", _config(epochs=3, init_model=str(tmp_path / "other" / "model.pt")),
              resume=True)


def test_resume_with_as_many_epochs_does_nothing(tiny_training_set, tmp_path, caplog):
    """--epochs equal to the epochs trained: nothing is trained, the metrics say what the run is."""
    out = tmp_path / "run"
    first = train(tiny_training_set, out, _config(epochs=2))
    with caplog.at_level("INFO", logger="lumos_ops.lumos.train"):
        again = train(tiny_training_set, out, _config(epochs=2), resume=True)
    assert "already trained 2 epochs; nothing to do" in caplog.text
    assert _state(out)["epoch"] == 2
    assert again["history"] == first["history"] and again["model_sha256"] == first["model_sha256"]
    assert (again["epochs"], len(again["history"])) == (2, 2) and again["best_epoch"] <= 2
    with pytest.raises(LumosValueError, match="has trained 2 epochs, more than --epochs 1; give --epochs 2 or more"):
        train(tiny_training_set, out, _config(epochs=1), resume=True)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_resume_checks_a_state_saved_without_its_settings(tiny_training_set, tmp_path):
    """A state written before the settings were recorded is checked against its TrainConfig."""
    out = tmp_path / "run"
    train(tiny_training_set, out, _config(epochs=1))
    state = _state(out)
    del state["settings"]
    torch.save(state, out / "train_state.pt")
    with pytest.raises(LumosValueError, match="lr 0.001 -> 0.01"):
        train(tiny_training_set, out, _config(epochs=2, lr=1e-2), resume=True)
    assert train(tiny_training_set, out, _config(epochs=2), resume=True)["epochs"] == 2
