"""``lumos adapt`` through ``lumos_ops.cli.main``: outputs, the printed comparison, one-line input errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from lumos_ops.cli import main


def _exposure(path, band, expnum, seed, shape=(140, 150)):
    data = np.random.default_rng(seed).normal(600.0, 25.0, shape).astype(np.float32)
    header = fits.Header({"FILTER": band, "EXPTIME": 90.0, "GAIN": 1.0, "PSFFWHM": 0.9, "EXPNUM": expnum})
    fits.PrimaryHDU(data, header=header).writeto(path)


@pytest.mark.slow
def test_adapt_writes_model_and_report_and_prints_base_against_adapted(tmp_path, capsys):
    for k in range(2):
        _exposure(tmp_path / f"r{k}.fits", "NB615", 10 + k, k)
    rng = np.random.default_rng(0)
    pd.DataFrame({"ref_id": np.arange(20), "x": rng.uniform(10, 140, 20), "y": rng.uniform(10, 130, 20),
                  "r50": rng.uniform(0.2, 0.8, 20), "sersic_n": 1.0, "q": 0.8, "pa": 0.0,
                  "i_auto": 21.0}).to_csv(tmp_path / "cat.csv", index=False)
    out = tmp_path / "out"
    args = ["adapt", "--exposures", str(tmp_path / "r*.fits"), "--catalog", str(tmp_path / "cat.csv"), "--out",
            str(out), "--n-stamps", "64", "--epochs", "1", "--n-galaxies", "8", "--n-place", "2",
            "--classical-methods", "aperture", "--holdout", "0.5", "--spacing", "30", "--device", "cpu", "-q"]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "shared-error term recorded in the candidate (rho by measured SNR): 0-5: " in captured.err
    assert "base  adapted" in printed
    assert "pull sigma68 0.9-1.1" in printed and str(out / "injection_report.json") in printed
    report = json.loads((out / "injection_report.json").read_text())
    assert len(report["adapt"]["train_exposures"]) == 1 and len(report["adapt"]["heldout_exposures"]) == 1
    assert report["adapt"]["config"]["spacing"] == 30 and report["adapt"]["config"]["truth_mismatch"] is None
    assert report["adapt"]["pixel_noise"]["factor"] == pytest.approx(25.0 / 90.0 / 0.2752, rel=0.05)
    assert set(report["populations"]["sersic"]["methods"]) == {"aperture", "lumos"}
    floor = report["populations"]["sersic"]["methods"]["lumos"]["error_floor"]
    assert floor["applied"] == pytest.approx(0.011) and floor["asked"]["min_snr"] == 50.0  # the PAUS default
    assert (out / "model.pt").is_file() and (out / "injection_report.png").is_file()
    stamp = {p: (out / p).stat().st_mtime_ns for p in ("model.pt", "teahupoo/meta.parquet",
                                                         "injection/sersic-candidate.parquet")}
    assert main(args) == 0  # a rerun reuses every finished stage
    assert {p: (out / p).stat().st_mtime_ns for p in stamp} == stamp


def test_truth_mismatch_flag_reaches_the_config(monkeypatch):
    from lumos_ops.cli import adapt as adapt_cli
    from lumos_ops.sim.truth_mismatch import TRUTH_MISMATCH

    seen = {}

    def fake_adapt(exposures, catalog, out, config, **kwargs):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("lumos_ops.lumos.adapt.adapt", fake_adapt)
    monkeypatch.setattr("lumos_ops.io.catalog.read_catalog", lambda path: None)
    parser = argparse.ArgumentParser()
    adapt_cli.register(parser.add_subparsers())
    for flag, expected in (([], None), (["--truth-mismatch"], TRUTH_MISMATCH)):
        args = parser.parse_args(["adapt", "--exposures", "x", "--catalog", "c.csv", "--out", "o", *flag])
        with pytest.raises(SystemExit):
            args.func(args)
        assert seen["config"].truth_mismatch == expected
        assert seen["config"].measure_error_floor  # the survey's floors measured on the training exposures
        assert seen["config"].psf_profile == "stars" and seen["config"].floor_snr_range == (50.0, 150.0)
        assert seen["config"].training_psf == ("model" if flag else "stars")  # the mismatch perturbs the model's PSF
    args = parser.parse_args(["adapt", "--exposures", "x", "--catalog", "c.csv", "--out", "o", "--keep-error-floor",
                              "--psf-profile", "moffat", "--training-psf", "model", "--floor-snr-range", "30", "300"])
    with pytest.raises(SystemExit):
        args.func(args)
    assert not seen["config"].measure_error_floor and seen["config"].psf_profile == "moffat"
    assert seen["config"].floor_snr_range == (30.0, 300.0)
    assert seen["config"].training_psf == "model"


def test_no_exposures_is_a_one_line_error(tmp_path, capsys):
    pd.DataFrame({"ref_id": [1], "x": [5.0], "y": [5.0], "r50": [0.5], "sersic_n": [1.0], "q": [1.0], "pa": [0.0],
                  "i_auto": [21.0]}).to_csv(tmp_path / "cat.csv", index=False)
    code = main(["adapt", "--exposures", str(tmp_path / "none" / "*.fits"), "--catalog", str(tmp_path / "cat.csv"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no FITS exposure found" in err[0]


def test_adapt_prints_the_candidates_shared_error_and_pull_tails_per_population():
    from lumos_ops.cli.adapt import heldout_lines

    tails = {"lo": 5.0, "hi": 10.0, "n": 40, "above_3": 0.025, "independent_coadd_sigma68": 1.19}
    shared = {"lo": 5.0, "hi": 10.0, "n_galaxies": 12, "rho": 0.1, "coadd5_factor": 1.2}
    report = {"populations": {"sersic": {"methods": {"lumos": {"pull_tails": [tails], "shared_pull": [shared]},
                                                     "aperture": {"pull_tails": [tails]}}},
                              "knots": {"methods": {"lumos": {"pull_tails": [{**tails, "n": 5}]}}}}}
    lines = heldout_lines(report)
    assert len(lines) == 2 and all(line.startswith("sersic   lumos") for line in lines)
    assert "shared by a galaxy's placements" in lines[0]
    assert "above +3 2.5 %" in lines[1] and "independent exposures 1.19" in lines[1]

