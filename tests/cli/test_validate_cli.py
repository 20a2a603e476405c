"""``lumos validate`` and its errors."""

import json

from lumos_ops.cli import main


def test_cli_validate_and_errors(checkpoint, tiny_training_set, tmp_path, capsys):
    code = main(["validate", "--model", str(checkpoint), "--test-set", str(tiny_training_set), "--split", "val",
                 "--baselines", "--device", "cpu", "--out", str(tmp_path), "--min-stamps", "0", "--estimator", "mean",
                 "-q"])
    assert code == 0
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["estimator"] == "mean"
    assert report["methods"]["overall"]["lumos"]["bias"] == report["methods"]["overall"]["lumos_mean"]["bias"]
    printed = capsys.readouterr().out
    assert '"n_stamps": 24' in printed and "PIT KS distance from uniform" in printed
    # a posterior model: no likelihood to make a posterior of with the test population
    assert "pit_population_prior" not in report["fixed_truth"]
    assert "PIT KS, likelihood x test population" not in printed
    assert main(["validate", "--model", str(checkpoint), "--test-set", str(tiny_training_set), "--device", "cpu",
                 "--out", str(tmp_path), "-q"]) == 2
    assert "needs >= 10000" in capsys.readouterr().err
    assert main(["validate", "--model", str(tmp_path / "missing.pt"), "--test-set", str(tiny_training_set),
                 "--out", str(tmp_path), "-q"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path)]) == 2


def test_validate_reads_stamps_by_band_name_and_says_what_it_shares_with_training(checkpoint, tiny_training_set,
                                                                                 tmp_path, capsys, caplog):
    """The model's embedding row of each stamp comes from its band name, not from the set's own
    band_epoch (another survey counts its bands otherwise); a band the model lacks is one error; a
    test set that is the model's training set says so; --out that is a file is one error."""
    import shutil

    import numpy as np
    import pandas as pd
    import pytest

    from lumos_ops.evaluation.stamp_inference import model_band_rows
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(checkpoint, device="cpu")
    meta = TrainingSet(tiny_training_set).meta
    np.testing.assert_array_equal(model_band_rows(loaded, meta, where="set"), meta["band_epoch"].to_numpy())
    other = pd.DataFrame({"band": ["NB685", "r"], "epoch": [1, 0], "band_epoch": [0, 1]})
    with pytest.raises(LumosValueError, match="no embedding row for r epoch 0"):
        model_band_rows(loaded, other, where="sdss set")
    assert model_band_rows(loaded, other.iloc[:1], where="set")[0] == loaded.band_epoch_row("NB685", 1) == 63

    # a set of another survey: its band_epoch 0 is band NB685 epoch 1 here, read as row 63
    relabelled = tmp_path / "relabelled"
    shutil.copytree(tiny_training_set, relabelled)
    table = pd.read_parquet(relabelled / "meta.parquet")
    table["band"], table["epoch"], table["band_epoch"] = "NB685", 1, 0
    table.to_parquet(relabelled / "meta.parquet")
    args = ["--test-set", str(relabelled), "--split", "val", "--device", "cpu", "--min-stamps", "0", "-q"]
    assert main(["validate", "--model", str(checkpoint), "--out", str(tmp_path / "a"), *args]) == 0
    capsys.readouterr()

    # the model trained on this set: scored on it, the report and the log say so
    from lumos_ops.lumos.model import get_model

    from lumos_helpers import NORM

    trained = tmp_path / "trained.pt"
    save_checkpoint(trained, get_model("fast"), arch="fast", normalization=NORM,
                    metadata={"truncation_imag": 20.5, "training_set": str(relabelled)})
    with caplog.at_level("WARNING"):
        assert main(["validate", "--model", str(trained), "--out", str(tmp_path / "b"), *args]) == 0
    report = json.loads((tmp_path / "b" / "validation.json").read_text())
    assert "is the model's own training set" in report["training_overlap"]
    assert "is the model's own training set" in caplog.text
    assert json.loads((tmp_path / "a" / "validation.json").read_text())["training_overlap"] is None
    (tmp_path / "file").write_text("")
    assert main(["validate", "--model", str(checkpoint), "--out", str(tmp_path / "file"), *args]) == 2
    assert "is a file; give --out a folder" in capsys.readouterr().err


def test_training_overlap_looks_at_the_adapted_set_first(tiny_training_set):
    """An adapted model keeps its base network's training_set key (often a folder gone since); the set
    it was fine-tuned on is the one that holds the survey's exposures."""
    from types import SimpleNamespace

    from lumos_ops.evaluation.validate import training_overlap
    from lumos_ops.io.training_set import TrainingSet

    ts = TrainingSet(tiny_training_set)
    adapted = SimpleNamespace(metadata={"training_set": "/nonexistent/base-set",
                                        "adapt": {"training_set": str(tiny_training_set)}})
    assert "is the model's own training set" in training_overlap(adapted, ts)
    assert training_overlap(SimpleNamespace(metadata={"training_set": "/nonexistent/base-set"}), ts) is None
