"""Transfer learning on exposure pairs, the validation report and the CLI commands."""

import json

import numpy as np
import pytest
import torch

from lumos_ops.cli import main
from lumos_ops.evaluation.validate import validate
from lumos_ops.evaluation.validate_config import ValidateConfig
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.pairs import make_pairs
from lumos_ops.lumos.transfer import TransferConfig, transfer

from lumos_helpers import write_exposure


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    p1, catalog = write_exposure(root / "e1.fits", seed=11, zp=26.0)
    p2, _ = write_exposure(root / "e2.fits", seed=12, zp=26.3)
    catalog.to_csv(root / "catalog.csv", index=False)
    return [str(p1), str(p2)], catalog, root / "catalog.csv"


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


def test_validate_report(checkpoint, survey, tiny_training_set, tmp_path):
    paths, _, catalog_path = survey
    config = ValidateConfig(split="val", baselines=("aperture",), device="cpu", progress=False, min_stamps=0,
                            deblend_stamps=12, no_ccd_model=str(checkpoint))
    report = validate(checkpoint, tiny_training_set, tmp_path, config, pairs_from=(paths, catalog_path))
    assert report["summary"]["n_stamps"] == 24
    assert "prior_only" in report["methods"]["overall"]
    assert "bayes_optimal" not in report["methods"]["overall"]  # needs the optimal weighted sum
    overall = report["methods"]["overall"]
    assert report["estimator"] == "median"
    assert [overall["lumos"][k] for k in ("bias", "sigma68")] == [overall["lumos_median"][k] for k in ("bias", "sigma68")]
    assert overall["lumos_mean"]["sigma68"] != overall["lumos_median"]["sigma68"]
    assert report["pit_without_ccd"]["pit_ks_distance"] == pytest.approx(report["summary"]["pit_ks_distance"])
    assert [t["name"] for t in report["targets"]][-1].startswith("deblending")
    assert report["deblending"]["n_stamps"] == 12
    assert set(report["deblending"]["by_distance"]) == {"lumos", "aperture"}
    assert sum(r["n"] for r in report["deblending"]["by_distance"]["lumos"]) == 12
    assert set(report["deblending"]["isolated"]) == {"lumos", "aperture"}
    assert sum(r["n"] for r in report["deblending"]["excess_by_distance"]["lumos"]) == 12
    assert report["deblending"]["target_fluxes"] == "test_set"
    assert report["deblending_other"]["catalog"]["target_fluxes"] == "catalog"
    assert report["targets"][-1]["measured"] is not None and not list(tmp_path.glob("**/shards"))
    assert 0.0 <= report["summary"]["pit_ks_distance"] <= 1.0
    assert report["missing_baselines"] == ["aperture"]  # 60 px stamps cannot hold the annulus
    assert sum(report["pit_hist"]) == 24
    assert report["pairs"]["n_pairs"] == 23
    assert (tmp_path / "validation.png").stat().st_size > 0
    assert (tmp_path / "validation_methods.png").stat().st_size > 0
    assert json.loads((tmp_path / "validation.json").read_text())["summary"]["model_sha256"]


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
    assert main(["validate", "--model", str(checkpoint), "--test-set", str(tiny_training_set), "--device", "cpu",
                 "--out", str(tmp_path), "-q"]) == 2
    assert "needs >= 10000" in capsys.readouterr().err
    assert main(["validate", "--model", str(tmp_path / "missing.pt"), "--test-set", str(tiny_training_set),
                 "--out", str(tmp_path), "-q"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path)]) == 2
