"""``lumos inject`` through ``lumos_ops.cli.main``: the report names the checkpoint LUMOS measured with."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from lumos_ops.cli import main
from lumos_ops.lumos.checkpoint import load_checkpoint, resolve_model_path
from lumos_ops.lumos.shared_error import SharedError


def _frame(path, seed: int = 0, shape: tuple[int, int] = (200, 220)) -> None:
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 20.0, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in rng.uniform(15, min(shape) - 15, (6, 2)):
        data += 5e5 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.3**2) / (2 * np.pi * 1.3**2)
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path)


def test_inject_report_records_the_resolved_model(tmp_path, capsys):
    _frame(tmp_path / "a.fits")
    out = tmp_path / "out"
    rc = main(["inject", "--frames", str(tmp_path / "a.fits"), "--out", str(out), "--methods", "aperture", "lumos",
               "--populations", "sersic", "--n-galaxies", "12", "--n-place", "2", "--snr-range", "50", "100", "-q"])
    assert rc == 0
    report = json.loads((out / "injection_report.json").read_text())
    path = resolve_model_path(None)
    assert report["model"] == {"name": "default", "path": str(path), "version": path.stem,
                               "sha256": load_checkpoint(path).sha256}
    assert (out / "injection_report.png").is_file() and (out / "injection_table.parquet").is_file()
    bias = [r for r in report["targets"] if r["target"].startswith("per exposure, true SNR >= 5: |bias|")][0]
    printed = [line for line in capsys.readouterr().out.splitlines() if bias["target"] in line][0]
    error = [] if bias["error"] is None else ["±", f"{bias['error']:.3f}"]
    expected = [f"{bias['value']:.3f}", *error, f"{bias['value_vs_model_flux']:.3f}"]
    assert printed.split()[2 : 2 + len(expected)] == expected
    if not bias["met"] and bias["outside_in_errors"] is not None:
        assert printed.endswith(f"(missed by {bias['outside_in_errors']:.1f} errors)")

    # the run's shared error recorded in a copy of the model it measured with
    copy = tmp_path / "with_shared.pt"
    assert main(["model", "shared-error", str(out), "--out", str(copy)]) == 0
    written = load_checkpoint(copy)
    assert written.sha256 == load_checkpoint(path).sha256
    shared = SharedError.from_dict(written.metadata["shared_error"])
    # one frame: no two placements of a galaxy on different frames, so nothing shared is measured
    assert shared.source == f"lumos inject {out}" and sum(shared.n_galaxies) == 0 and not any(shared.rho)
    assert "shared_error" not in load_checkpoint(path).metadata  # the shipped file is untouched
    # a report made on another machine: its path is gone, the shipped model of its name is used
    moved = {**report, "model": {**report["model"], "path": "/elsewhere/lumos-fast-v11.pt"}}
    (out / "injection_report.json").write_text(json.dumps(moved))
    assert main(["model", "shared-error", str(out), "--out", str(copy)]) == 0
    assert load_checkpoint(copy).sha256 == written.sha256
    capsys.readouterr()
    assert main(["model", "shared-error", str(out), "--out", str(copy), "--populations", "knots"]) != 0
    assert "no LUMOS rows of population(s) ['knots']; it has ['sersic']" in capsys.readouterr().err
    assert main(["model", "shared-error", str(tmp_path), "--out", str(copy)]) != 0
    assert "injection_table.parquet: missing; give the --out directory of a `lumos inject` run" in capsys.readouterr().err


def test_inject_without_lumos_records_no_model(tmp_path):
    _frame(tmp_path / "a.fits", seed=1)
    out = tmp_path / "out"
    assert main(["inject", "--frames", str(tmp_path / "a.fits"), "--out", str(out), "--methods", "aperture",
                 "--populations", "sersic", "--n-galaxies", "2", "--n-place", "2", "--snr-range", "50", "100",
                 "-q"]) == 0
    assert json.loads((out / "injection_report.json").read_text())["model"] is None


def test_inject_prints_what_a_galaxys_placements_share():
    from lumos_ops.cli.inject import shared_line

    bins = [{"lo": 1.0, "hi": 2.0, "n_galaxies": 80, "rho": 0.5, "coadd5_factor": 1.7},
            {"lo": 2.0, "hi": 5.0, "n_galaxies": 80, "rho": 0.09, "coadd5_factor": 1.166},
            {"lo": 5.0, "hi": 10.0, "n_galaxies": 60, "rho": 0.04, "coadd5_factor": 1.077},
            {"lo": 10.0, "hi": 20.0, "n_galaxies": 4, "rho": 0.9, "coadd5_factor": 2.1},
            {"lo": 50.0, "hi": 1e6, "n_galaxies": 90, "rho": 0.3, "coadd5_factor": 1.48}]
    line = shared_line("sersic", "lumos", {"shared_pull": bins})
    assert line.endswith("true SNR 2-10: rho +0.090 / +0.040 (5-exposure co-adds up to 1.17x too narrow)")
    assert shared_line("sersic", "lumos", {"shared_pull": bins[3:4]}) is None


def test_inject_prints_the_pulls_tails_beside_what_placements_share():
    from lumos_ops.cli.inject import tails_line

    bins = [{"lo": 1.0, "hi": 2.0, "n": 80, "above_3": 0.1, "independent_coadd_sigma68": 1.5},
            {"lo": 2.0, "hi": 5.0, "n": 300, "above_3": 0.027, "independent_coadd_sigma68": 1.21},
            {"lo": 5.0, "hi": 10.0, "n": 240, "above_3": 0.02, "independent_coadd_sigma68": 1.16},
            {"lo": 10.0, "hi": 20.0, "n": 5, "above_3": 0.4, "independent_coadd_sigma68": 2.0},
            {"lo": 20.0, "hi": 50.0, "n": 300, "above_3": 0.0, "independent_coadd_sigma68": float("nan")}]
    line = tails_line("sersic", "lumos", {"pull_tails": bins})
    assert line.endswith("pulls' tails, true SNR 2-10: above +3 2.7 / 2.0 % (Gaussian 0.1 %); 5-exposure "
                         "co-add pull of independent exposures 1.21 / 1.16")
    assert tails_line("sersic", "lumos", {"pull_tails": bins[3:]}) is None
    assert tails_line("sersic", "lumos", {}) is None


def test_inject_can_take_each_frames_psf_from_its_stars(tmp_path, capsys):
    """``--psf-from-stars``: the Moffat FWHM of the frame's stars (six Gaussian stars of FWHM 3.06 px
    here) maps the frame, not the second-moment width; with too few stars it fails by name."""
    _frame(tmp_path / "a.fits", seed=2)
    out = tmp_path / "out"
    assert main(["inject", "--frames", str(tmp_path / "a.fits"), "--out", str(out), "--methods", "aperture",
                 "--populations", "sersic", "--n-galaxies", "4", "--n-place", "1", "--snr-range", "50", "100",
                 "--psf-from-stars", "-q"]) == 0
    assert json.loads((out / "injection_report.json").read_text())["config"]["psf_from_stars"] is True
    blank = tmp_path / "blank.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(1000.0, 20.0, (200, 220)).astype(np.float32)).writeto(blank)
    capsys.readouterr()
    assert main(["inject", "--frames", str(blank), "--out", str(out), "--psf-from-stars", "-q"]) != 0
    assert f"{blank}: only 0 isolated unsaturated stars" in capsys.readouterr().err


def test_inject_rescore_scores_the_stored_table_again_and_keeps_the_run(tmp_path, capsys, monkeypatch):
    import pandas as pd

    _frame(tmp_path / "a.fits", seed=2)
    out = tmp_path / "out"
    assert main(["inject", "--frames", str(tmp_path / "a.fits"), "--out", str(out), "--methods", "aperture",
                 "--populations", "sersic", "--n-galaxies", "12", "--n-place", "2", "--snr-range", "50", "100",
                 "-q"]) == 0
    first = json.loads((out / "injection_report.json").read_text())
    table = pd.read_parquet(out / "injection_table.parquet")
    # the stored measurements changed by hand: a rescore reads them, a fresh measurement does not happen
    table["flux"] = table["true_flux"] * 1.5
    table.to_parquet(out / "injection_table.parquet", index=False)
    import lumos_ops.evaluation.injection as injection

    monkeypatch.setattr(injection, "run_injection", None)
    capsys.readouterr()
    assert main(["inject", "--rescore", "--out", str(out)]) == 0
    again = json.loads((out / "injection_report.json").read_text())
    kept = ("command", "config", "model", "aperture_correction", "aperture_correction_scope", "code")
    assert {k: again[k] for k in kept} == {k: first[k] for k in kept}
    assert first["code"]["version"]  # the code that measured the table, kept; the rescore's own is recorded too
    assert len(again["rescored"]) == 1 and again["rescored"][0]["lumos_ops"]
    assert {"package", "version"} <= set(again["rescored"][0]["code"])
    every = [b for b in again["populations"]["sersic"]["methods"]["aperture"]["by_true_snr"] if b["lo"] is None][0]
    assert every["bias"] == pytest.approx(0.5)
    assert first["coadd_outlier_fraction"] == again["coadd_outlier_fraction"] == 0.0  # PAUS's
    assert main(["inject", "--rescore", "--out", str(out), "--coadd-outlier-fraction", "0.01"]) == 0
    assert json.loads((out / "injection_report.json").read_text())["coadd_outlier_fraction"] == 0.01
    assert main(["inject", "--rescore", "--out", str(tmp_path / "none")]) != 0
    assert "injection_table.parquet: missing; --rescore needs the --out directory" in capsys.readouterr().err
    assert main(["inject", "--out", str(out)]) != 0
    assert "give --frames" in capsys.readouterr().err


def _survey_frame(path, band: str, seed: int) -> None:
    """A frame as a g-band survey writes it: its own FILTER, EXPTIME and PSFFWHM (pixels)."""
    _frame(path, seed=seed)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header.update({"FILTER": band, "EXPTIME": 60.0, "PSFFWHM": 3.06, "GAIN": 2.0})


def test_inject_with_a_survey_reads_each_frame_through_its_header_mapping(tmp_path, capsys):
    """``--survey``: the frames keep their own headers (band g, not the mapping's NB685), the report
    names the survey; options that only the PAUS mapping uses are refused by name."""
    survey = tmp_path / "gsurvey.json"
    assert main(["survey", "init", "--out", str(survey), "--name", "gsurvey", "--bands", "g", "--wavelengths", "477", "--zero-points", "25",
                 "--exptime", "60", "--pixel-scale", "0.4", "--psf-fwhm-unit", "pixel"]) == 0
    _survey_frame(tmp_path / "a.fits", "g", seed=3)
    out = tmp_path / "out"
    assert main(["inject", "--survey", str(survey), "--frames", str(tmp_path / "a.fits"), "--out", str(out),
                 "--methods", "aperture", "--populations", "sersic", "--n-galaxies", "6", "--n-place", "1",
                 "--snr-range", "50", "100", "-q"]) == 0
    import pandas as pd

    table = pd.read_parquet(out / "injection_table.parquet")
    assert set(table["band"]) == {"g"}
    report = json.loads((out / "injection_report.json").read_text())
    assert report["survey"]["name"] == "gsurvey" and report["survey"]["file"] == str(survey)
    capsys.readouterr()
    assert main(["inject", "--survey", str(survey), "--frames", str(tmp_path / "a.fits"), "--out", str(out),
                 "--band", "g", "--noise-ratio", "2", "-q"]) != 0
    err = capsys.readouterr().err
    assert f"--band, --noise-ratio map frames without a survey; with --survey {survey}" in err
    # a frame of a band the survey does not have: the exposure reader names it
    _survey_frame(tmp_path / "b.fits", "z", seed=4)
    assert main(["inject", "--survey", str(survey), "--frames", str(tmp_path / "b.fits"), "--out", str(out),
                 "--methods", "aperture", "--populations", "sersic", "--n-galaxies", "2", "--n-place", "1", "-q"]) != 0
    err = capsys.readouterr().err
    assert str(tmp_path / "b.fits") in err and "'z'" in err


def test_inject_draws_the_galaxies_shapes_from_a_catalogue(tmp_path):
    """``--catalog``: galaxies drawn from its r50 column; at the same true SNR, 1.5 arcsec galaxies
    carry more flux than 0.3 arcsec ones (their matched filter spans more sky)."""
    import pandas as pd

    _frame(tmp_path / "a.fits", seed=5)
    medians = {}
    for r50 in (0.3, 1.5):
        cat = tmp_path / f"cat{r50}.csv"
        pd.DataFrame({"ref_id": [1, 2], "x": [10.0, 20.0], "y": [10.0, 20.0], "r50": [r50, r50],
                      "sersic_n": [1.0, 1.0], "q": [0.8, 0.8], "pa": [0.0, 0.0], "i_auto": [21.0, 21.0]}).to_csv(cat, index=False)
        out = tmp_path / f"out{r50}"
        assert main(["inject", "--frames", str(tmp_path / "a.fits"), "--out", str(out), "--methods", "aperture",
                     "--populations", "sersic", "--n-galaxies", "6", "--n-place", "1", "--snr-range", "50", "50.001",
                     "--catalog", str(cat), "-q"]) == 0
        medians[r50] = float(pd.read_parquet(out / "injection_table.parquet")["true_flux"].median())
    assert medians[1.5] > 2.0 * medians[0.3]


def test_inject_can_measure_with_the_psf_flux_correction(tmp_path):
    """``--psf-flux-correction`` turns the survey's correction on (here the built-in PAUS mapping's,
    off by default); on this frame, whose six stars are too few for a PSF, the rows are measured with
    the targets' aperture correction instead (not with no correction), as without the option."""
    import pandas as pd

    _frame(tmp_path / "a.fits", seed=6)
    args = ["inject", "--frames", str(tmp_path / "a.fits"), "--methods", "aperture", "--populations", "sersic",
            "--n-galaxies", "4", "--n-place", "1", "--snr-range", "50", "100", "-q"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--out", str(tmp_path / "fc"), "--psf-flux-correction"]) == 0
    assert "flux_correction" not in pd.read_parquet(tmp_path / "plain" / "injection_table.parquet")
    corrected = pd.read_parquet(tmp_path / "fc" / "injection_table.parquet")
    assert "flux_correction" not in corrected and "aperture_correction" in corrected
    report = json.loads((tmp_path / "fc" / "injection_report.json").read_text())
    assert report["survey"]["psf_flux_correction"] is True and report["survey"]["file"] is None


def test_inject_can_measure_without_the_aperture_correction(tmp_path):
    """The correction from the targets is on by default: every row carries its factor (1 here: four
    targets are too few to calibrate it) and the report says so; ``--no-aperture-correction`` turns it
    off, and the column is absent."""
    import pandas as pd

    _frame(tmp_path / "a.fits", seed=6)
    args = ["inject", "--frames", str(tmp_path / "a.fits"), "--methods", "aperture", "--populations", "sersic",
            "--n-galaxies", "4", "--n-place", "1", "--snr-range", "50", "100", "-q"]
    assert main([*args, "--out", str(tmp_path / "plain"), "--no-aperture-correction"]) == 0
    assert main([*args, "--out", str(tmp_path / "ac")]) == 0
    assert "aperture_correction" not in pd.read_parquet(tmp_path / "plain" / "injection_table.parquet")
    assert (pd.read_parquet(tmp_path / "ac" / "injection_table.parquet")["aperture_correction"] == 1.0).all()
    report = json.loads((tmp_path / "ac" / "injection_report.json").read_text())
    assert report["aperture_correction"] is True and report["aperture_correction_scope"] == "frame"
    assert report["populations"]["sersic"]["methods"]["aperture"]["aperture_correction"]["corrected_share"] == 0.0
    assert json.loads((tmp_path / "plain" / "injection_report.json").read_text())["aperture_correction"] is False
