"""``lumos train`` input checks: one-line errors before ``--out`` is created, stamp sizes, atomic metrics."""

import json
import os

import pytest
import torch

from lumos_ops.cli import build_parser, main
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.lumos.train import TrainConfig, train
from lumos_ops.lumos.transfer import TransferConfig

from lumos_helpers import resized_set


def _config(**kw):
    base = dict(arch="fast", epochs=1, batch_size=32, lr=1e-3, seed=3, device="cpu", progress=False, norm_sample=64)
    base.update(kw)
    return TrainConfig(**base)


def _one_line_error(capsys, argv, needle):
    """Run ``lumos argv``: exit status 2 and a one-line error holding ``needle``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    return err


def test_larger_stamps_train_on_their_centre(tiny_training_set, tmp_path):
    """96-px stamps whose central 60 px are the tiny set's train exactly as the tiny set does."""
    big = resized_set(tiny_training_set, tmp_path / "big", 96)
    plain = train(tiny_training_set, tmp_path / "plain", _config())
    cropped = train(big, tmp_path / "cropped", _config())
    assert cropped["history"][0]["val_loss"] == plain["history"][0]["val_loss"]
    a = torch.load(tmp_path / "plain" / "train_state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cropped" / "train_state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_smaller_stamps_are_refused_before_out_is_made(tiny_training_set, tmp_path):
    small = resized_set(tiny_training_set, tmp_path / "small", 40)
    with pytest.raises(LumosValueError, match="stamps are 40 px, the network needs 60 px"):
        train(small, tmp_path / "out", _config())
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused(tiny_training_set, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LumosValueError, match="exists and is not a directory"):
        train(tiny_training_set, tmp_path / "file", _config())
    _one_line_error(capsys, ["train", "--training-set", str(tiny_training_set), "--out", str(tmp_path / "file"), "-q"],
                    "is not a directory")


@pytest.mark.parametrize(("options", "needle"), [
    (["--max-train", "0"], "max_train must be >= 1"),
    (["--max-train", "-5"], "max_train must be >= 1"),
    (["--max-val", "-1"], "max_val must be >= 1"),
    (["--threads", "-1"], "num_threads must be >= 1"),
    (["--ccd-shape", "0", "100"], "ccd_shape must be"),
    (["--n-stamps", "10"], "--n-stamps: recipe only"),
    (["--workers", "2"], "--workers: recipe only"),
])
def test_bad_options_are_one_line_errors_and_make_no_out(options, needle, tiny_training_set, tmp_path, capsys):
    out = tmp_path / "out"
    _one_line_error(capsys, ["train", "--training-set", str(tiny_training_set), "--out", str(out), "-q", *options],
                    needle)
    assert not out.exists()


def test_missing_training_set_makes_no_out(tmp_path, capsys):
    out = tmp_path / "out"
    _one_line_error(capsys, ["train", "--training-set", str(tmp_path / "nope"), "--out", str(out), "-q",
                             "--ccd-shape", "100", "100"], "no training-set manifest")
    assert not out.exists()


def test_recipe_refuses_training_set_options(tiny_training_set, tmp_path, capsys, monkeypatch):
    import lumos_ops.lumos.recipe

    monkeypatch.setattr(lumos_ops.lumos.recipe, "run_recipe", lambda *a, **k: pytest.fail("the recipe ran"))
    _one_line_error(capsys, ["train", "--recipe", "default", "--training-set", str(tiny_training_set),
                             "--out", str(tmp_path / "out")], "--training-set: not read with --recipe")
    assert not (tmp_path / "out").exists()


def test_config_rejects_counts_below_one():
    for name in ("max_train", "max_val", "num_threads"):
        for value in (0, -1):
            with pytest.raises(LumosValueError, match=f"{name} must be >= 1"):
                TrainConfig(**{name: value})
    assert TrainConfig(max_train=1, max_val=1, num_threads=1).max_train == 1
    with pytest.raises(LumosValueError, match="ccd_shape"):
        TrainConfig(ccd_shape=(10, -1))


def test_truncated_train_state_is_a_one_line_error(tiny_training_set, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_training_set, out, _config())
    state = out / "train_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(InputFileError, match=r"train_state.pt: not a readable training state .*remove it"):
        train(tiny_training_set, out, _config(epochs=2), resume=True)
    _one_line_error(capsys, ["train", "--training-set", str(tiny_training_set), "--out", str(out), "--resume",
                             "--epochs", "2", "--device", "cpu", "-q"], "use a new --out")
    torch.save({"model": {}}, state)
    with pytest.raises(InputFileError, match="not a training state of lumos train"):
        train(tiny_training_set, out, _config(epochs=2), resume=True)


def test_balanced_weights_on_a_population_set_is_refused(tiny_training_set, tmp_path):
    """The tiny set's fluxes follow a population (no reference prior): balanced weights would change nothing."""
    with pytest.raises(LumosValueError, match="train without --balanced-weights"):
        train(tiny_training_set, tmp_path / "out", _config(balanced_weights=True))
    assert not (tmp_path / "out").exists()


def test_metrics_are_replaced_atomically(tiny_training_set, tmp_path):
    """metrics.json is a new file renamed over the old one: a reader of the old file (here a hard link)
    keeps its whole content."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}')
    os.link(out / "metrics.json", tmp_path / "reader.json")
    metrics = train(tiny_training_set, out, _config())
    assert json.loads((tmp_path / "reader.json").read_text()) == {"old": True}
    assert json.loads((out / "metrics.json").read_text())["model_sha256"] == metrics["model_sha256"]
    assert not list(out.glob(".metrics.json.*.tmp"))  # io.atomic's temporary file, removed


def _option_help(command, option):
    parser = build_parser(command)
    sub = parser._subparsers._group_actions[0].choices[command]
    return next(a.help for a in sub._actions if option in a.option_strings)


def test_help_shows_the_defaults():
    for option, field in (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--seed", "seed")):
        assert f"(default {getattr(TrainConfig(), field)};" in _option_help("train", option)
    for option, field in (("--epochs", "epochs"), ("--batch-size", "batch_size")):
        assert f"(default {getattr(TransferConfig(), field)})" in _option_help("transfer", option)
