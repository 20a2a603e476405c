"""``lumos simulate survey`` and ``lumos simulate training-set``."""

from __future__ import annotations

import json

import numpy as np

from lumos_ops.cli import main
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.sim import SurveyManifest


def test_simulate_survey_and_training_set(tmp_path, capsys) -> None:
    config = tmp_path / "survey.yaml"
    config.write_text("n_epochs: 1\nn_exposures: 1\nartefacts: {faint_galaxies: false}\n")
    survey = tmp_path / "survey"
    rc = main(["simulate", "survey", "--out", str(survey), "--config", str(config), "--n-galaxies", "8",
               "--bands", "NB685", "--ccd-shape", "128", "128", "--seed", "4", "-q"])
    assert rc == 0
    assert "wrote 1 CCD images" in capsys.readouterr().out
    manifest = SurveyManifest.load(survey)
    assert manifest.n_galaxies == 8 and len(manifest.exposure_paths) == 1
    rc = main(["simulate", "training-set", "--exposures", str(survey / "exposures" / "**" / "*.fits"),
               "--catalog", str(survey / "catalog.parquet"), "--out", str(tmp_path / "ts"), "--n-stamps", "5",
               "--size", "32", "--seed", "1", "-q"])
    assert rc == 0
    assert "stamps/s" in capsys.readouterr().out
    ts = TrainingSet(tmp_path / "ts")
    assert ts.images(np.arange(5)).shape == (5, 2, 32, 32)
    rc = main(["simulate", "training-set", "--exposures", str(survey), "--catalog", str(survey / "catalog.parquet"),
               "--out", str(tmp_path / "ts2"), "--n-stamps", "5", "--size", "32", "--seed", "1", "-q"])
    assert rc == 0
    assert (tmp_path / "ts" / "shards" / "shard-00000.npy").read_bytes() == (
        tmp_path / "ts2" / "shards" / "shard-00000.npy"
    ).read_bytes()
    rc = main(["simulate", "training-set", "--exposures", str(survey), "--catalog", str(survey / "catalog.parquet"),
               "--out", str(tmp_path / "ts3"), "--n-stamps", "5", "--size", "32", "--seed", "1",
               "--target-clearance", "3", "--clearance-fraction", "0.7", "-q"])
    assert rc == 0
    config = json.loads((tmp_path / "ts3" / "manifest.json").read_text())["config"]
    assert (config["target_clearance"], config["clearance_fraction"]) == (3.0, 0.7)
    assert "knot_fraction" not in json.loads((tmp_path / "ts3" / "manifest.json").read_text())["config"]
    rc = main(["simulate", "training-set", "--exposures", str(survey), "--catalog", str(survey / "catalog.parquet"),
               "--out", str(tmp_path / "ts4"), "--n-stamps", "5", "--size", "32", "--seed", "1",
               "--psf-scale-range", "0.7", "1.4", "--truth-psf-beta-range", "2", "6", "--truth-r50-scatter", "0.1",
               "--truth-psf-fwhm-scatter", "0.05", "--knot-fraction", "0.5", "--knot-flux-range", "0.1", "0.2", "--sky-removed-range", "0", "0.5", "-q"])
    assert rc == 0
    recorded = json.loads((tmp_path / "ts4" / "manifest.json").read_text())["config"]
    assert (recorded["psf_scale_range"], recorded["truth_psf_beta_range"], recorded["knot_flux_range"]) == (
        [0.7, 1.4], [2.0, 6.0], [0.1, 0.2])
    assert recorded["knot_fraction"] == 0.5 and recorded["truth_r50_scatter"] == 0.1
    assert recorded["sky_removed_range"] == [0.0, 0.5]
    assert "knot_flux_frac" in TrainingSet(tmp_path / "ts4").meta.columns


def test_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["simulate", "survey", "--out", str(tmp_path / "s"), "--bands", "NB999", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NB999" in err
    assert main(["simulate", "training-set", "--exposures", str(tmp_path / "none"), "--catalog", "c.csv",
                 "--out", str(tmp_path / "t"), "--n-stamps", "3", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no FITS exposures" in err
