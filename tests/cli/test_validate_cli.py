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
