"""The validation report end to end on a checkpoint and a tiny set (evaluation/validate.py)."""

import json

import pytest

from lumos_ops.evaluation.validate import validate
from lumos_ops.evaluation.validate_config import ValidateConfig


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
    assert report["code"]["package"] == "lumos-ops" and report["code"]["version"]
