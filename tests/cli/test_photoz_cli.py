"""``lumos photoz run`` and ``lumos photoz validate`` end to end on a small simulated catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops.cli import main
from lumos_ops.constants import NB_BANDS
from lumos_ops.photoz.fit import RESULT_COLUMNS
from lumos_ops.sim import SurveyConfig, simulate_survey


def _coadd_table(catalog: pd.DataFrame, *, snr: float, seed: int, drop: float) -> pd.DataFrame:
    """Long co-add table from the catalogue's true fluxes: constant error per source, some bands missing."""
    rng = np.random.default_rng(seed)
    true = catalog[[f"flux_nJy_{b}" for b in NB_BANDS]].to_numpy()
    err = np.repeat(np.median(true, axis=1, keepdims=True) / snr, len(NB_BANDS), axis=1)
    flux = true + err * rng.normal(size=true.shape)
    keep = rng.uniform(size=true.shape) >= drop
    ref, band = np.meshgrid(catalog["ref_id"].to_numpy(), np.array(NB_BANDS), indexing="ij")
    return pd.DataFrame({"ref_id": ref[keep], "band": band[keep], "flux": flux[keep], "flux_err": err[keep]})


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated survey: its catalogue.parquet carries zspec and the true 40-band fluxes."""
    out = tmp_path_factory.mktemp("survey")
    simulate_survey(
        SurveyConfig(seed=3, ccd_shape=(96, 96), n_galaxies=120, bands=("NB685",), n_exposures=1, n_epochs=1,
                     n_ccds=8, stamp_size=48),
        out,
    )
    return out


def test_run_and_validate(survey: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = pd.read_parquet(survey / "catalog.parquet")
    coadds = tmp_path / "coadds.csv"
    _coadd_table(catalog, snr=20.0, seed=1, drop=0.2).to_csv(coadds, index=False)
    out = tmp_path / "pz.parquet"
    assert main(["photoz", "run", "--coadds", str(coadds), "--out", str(out), "--prior",
                 "--catalog", str(survey / "catalog.parquet")]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == ["ref_id", *RESULT_COLUMNS]
    assert sorted(table.ref_id) == sorted(catalog.ref_id)
    assert table.z_mode.notna().all()
    report_dir = tmp_path / "report"
    capsys.readouterr()
    assert main(["photoz", "validate", "--catalog", str(survey / "catalog.parquet"), "--photoz", str(out),
                 "--report", str(report_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[1].split()[:3] == ["1.00", "all", str(len(catalog))]
    report = json.loads((report_dir / "photoz_metrics.json").read_text())
    assert (report_dir / "photoz_validation.png").stat().st_size > 10_000
    assert report["n_matched"] == len(catalog)
    overall = {row["fraction"]: row for row in report["metrics"] if row["bin"] == "all"}
    assert overall[1.0]["n"] == len(catalog) and overall[0.5]["n"] == int(np.ceil(len(catalog) / 2))
    assert overall[1.0]["sigma68"] < 0.01
    assert overall[0.5]["outlier_fraction"] <= overall[1.0]["outlier_fraction"]


def test_cli_errors_name_the_file_and_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coadds = tmp_path / "bad.csv"
    pd.DataFrame({"ref_id": [1, 1], "band": ["NB455", "NB999"], "flux": [1.0, 2.0], "flux_err": [1.0, 1.0]}).to_csv(
        coadds, index=False
    )
    assert main(["photoz", "run", "--coadds", str(coadds), "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: row 2: column band='NB999'" in err
    assert main(["photoz", "run", "--coadds", str(coadds), "--out", str(tmp_path / "o.txt")]) == 2
    assert "o.txt" in capsys.readouterr().err
    pz = tmp_path / "pz.csv"
    pd.DataFrame({"ref_id": [1], "z_mode": [0.3], "qz": [1.0]}).to_csv(pz, index=False)
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"ref_id": [2], "zspec": [0.3], "i_auto": [20.0]}).to_csv(cat, index=False)
    assert main(["photoz", "validate", "--catalog", str(cat), "--photoz", str(pz), "--report", str(tmp_path / "r")]) == 2
    assert "no ref_id in common" in capsys.readouterr().err


def test_colours_compare_two_photometries(survey: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = pd.read_parquet(survey / "catalog.parquet")
    good = _coadd_table(catalog, snr=40.0, seed=2, drop=0.0).assign(method="lumos")
    bad = _coadd_table(catalog, snr=10.0, seed=3, drop=0.0).assign(method="aperture")
    both = tmp_path / "coadds.parquet"
    pd.concat([good, bad], ignore_index=True).to_parquet(both)
    out = tmp_path / "colours.json"
    assert main(["photoz", "colours", "--table", f"paus={both}", "--bands", "NB785", "NB795",
                 "--catalog", str(survey / "catalog.parquet"), "--json", str(out)]) == 0
    widths = {row["name"]: row for row in json.loads(out.read_text())["widths"]}
    assert set(widths) == {"paus:lumos", "paus:aperture"}
    assert widths["paus:lumos"]["sigma68"] < widths["paus:aperture"]["sigma68"]
    assert widths["paus:lumos"]["sigma95"] < widths["paus:aperture"]["sigma95"]
    assert "paus:lumos" in capsys.readouterr().out
    assert main(["photoz", "colours", "--table", str(both), "--bands", "NB785", "NB795",
                 "--catalog", str(tmp_path / "nothing.csv")]) == 2
    assert "nothing.csv: no such catalogue file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def noisy_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight galaxies at S/N ~ 3 (the prior matters): co.csv, and cat_noz.csv (ref_id, i_auto; no zspec)
    that lacks the last source."""
    from lumos_ops.sim.population import draw_galaxies

    folder = tmp_path_factory.mktemp("noisy")
    galaxies = draw_galaxies(np.random.default_rng(4), 8)
    galaxies.insert(0, "ref_id", np.arange(100, 108))
    _coadd_table(galaxies, snr=3.0, seed=5, drop=0.0).to_csv(folder / "co.csv", index=False)
    galaxies[["ref_id", "i_auto"]].iloc[:-1].to_csv(folder / "cat_noz.csv", index=False)
    galaxies[["ref_id", "i_auto"]].assign(zspec=np.nan).to_csv(folder / "cat_nanz.csv", index=False)
    return folder


def _run(night: Path, out: Path, *extra: str) -> int:
    return main(["photoz", "run", "--coadds", str(night / "co.csv"), "--out", str(out), "--z-step", "0.01", *extra])


def test_prior_catalogue_needs_no_zspec_and_missing_sources_use_the_fitted_i(
    noisy_night: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="lumos_ops.photoz.run"):
        assert _run(noisy_night, tmp_path / "cat.csv", "--prior", "--catalog", str(noisy_night / "cat_noz.csv")) == 0
    assert "1 of 8 sources have no i_auto" in caplog.text
    assert _run(noisy_night, tmp_path / "fitted.csv", "--prior") == 0
    with_cat, fitted = pd.read_csv(tmp_path / "cat.csv"), pd.read_csv(tmp_path / "fitted.csv")
    columns = ["z_mode", "z_mean", "z_sigma68", "odds", "qz"]
    np.testing.assert_allclose(with_cat[columns].iloc[-1], fitted[columns].iloc[-1], rtol=1e-10)
    # The other sources do take the catalogue's magnitudes (the prior changes their posterior).
    assert not np.allclose(with_cat["z_mean"].iloc[:-1], fitted["z_mean"].iloc[:-1], rtol=1e-6)
    # A catalogue's sentinel magnitude (-99) is no magnitude either: that source's prior uses the fitted i.
    sentinel = pd.read_csv(noisy_night / "cat_noz.csv")
    sentinel.loc[0, "i_auto"] = -99.0
    sentinel.to_csv(tmp_path / "sentinel.csv", index=False)
    assert _run(noisy_night, tmp_path / "sentinel_pz.csv", "--prior", "--catalog", str(tmp_path / "sentinel.csv")) == 0
    with_sentinel = pd.read_csv(tmp_path / "sentinel_pz.csv")
    np.testing.assert_allclose(with_sentinel[columns].iloc[0], fitted[columns].iloc[0], rtol=1e-10)


def test_catalog_without_prior_is_one_error(noisy_night: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(noisy_night, tmp_path / "pz.csv", "--catalog", str(noisy_night / "cat_noz.csv")) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--catalog " + str(noisy_night / "cat_noz.csv")
                        + ": the catalogue only gives the prior's magnitudes; add --prior or drop --catalog")
    assert len(err.splitlines()) == 1 and not (tmp_path / "pz.csv").exists()


def test_bad_out_is_one_error_before_the_fit(
    noisy_night: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lumos_ops.photoz.run as run_module

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fit ran before the output was checked")

    monkeypatch.setattr(run_module, "fit_photoz", no_fit)
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [(tmp_path / "dir.csv", "is a folder; give a file name"),
             (tmp_path / "file" / "pz.csv", "file is a file, not a folder")]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/x.csv"), "cannot write in /proc"))
    for out, message in cases:
        assert _run(noisy_night, out) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--out {out}: " in err and message in err, err


def test_run_replaces_its_output_atomically(noisy_night: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "new" / "pz.parquet"
    assert _run(noisy_night, out) == 0
    assert _run(noisy_night, out, "--prior") == 0
    assert [p.name for p in out.parent.iterdir()] == ["pz.parquet"]

    def half_written(self: pd.DataFrame, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_written)
    with pytest.raises(OSError, match="No space left"):
        _run(noisy_night, out)
    monkeypatch.undo()
    assert len(pd.read_parquet(out)) == 8
    assert [p.name for p in out.parent.iterdir()] == ["pz.parquet"]


def _validate(photoz: Path, catalog: Path, report: Path, *extra: str) -> int:
    return main(["photoz", "validate", "--catalog", str(catalog), "--photoz", str(photoz), "--report", str(report), *extra])


@pytest.fixture()
def tiny_photoz(tmp_path: Path) -> tuple[Path, Path]:
    """A hand-made photo-z table and a catalogue with zspec for the same two sources."""
    pz, cat = tmp_path / "pz.csv", tmp_path / "cat.csv"
    pd.DataFrame({"ref_id": [1, 2], "z_mode": [0.3, 0.5], "qz": [1.0, 2.0]}).to_csv(pz, index=False)
    pd.DataFrame({"ref_id": [1, 2], "zspec": [0.3, 0.51], "i_auto": [20.0, 21.0]}).to_csv(cat, index=False)
    return pz, cat


def test_validate_without_finite_zspec_is_one_error(
    tiny_photoz: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pz, cat = tiny_photoz
    pd.DataFrame({"ref_id": [1, 2], "zspec": [np.nan, np.nan], "i_auto": [20.0, 21.0]}).to_csv(cat, index=False)
    assert _validate(pz, cat, tmp_path / "r") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "none of the 2 sources in common" in captured.err and "finite zspec" in captured.err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fraction", ["1.5", "0", "nan"])
def test_validate_best_fraction_outside_0_1_is_one_error(
    fraction: str, tiny_photoz: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _validate(*tiny_photoz, tmp_path / "r", "--best-fraction", fraction) == 2
    assert f"--best-fraction {float(fraction)!r}: must lie in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_validate_best_fraction_one_and_bad_report_folders(
    tiny_photoz: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pz, cat = tiny_photoz
    assert _validate(pz, cat, tmp_path / "r", "--best-fraction", "1") == 0
    assert json.loads((tmp_path / "r" / "photoz_metrics.json").read_text())["best_fraction"] == 1.0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["photoz_metrics.json", "photoz_validation.png"]
    capsys.readouterr()
    for report, message in ((pz / "sub", "pz.csv is a file, not a folder"), (pz, "pz.csv is a file, not a folder")):
        assert _validate(pz, cat, report) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--report {report}: " in err and message in err, err
    (tmp_path / "r2" / "photoz_validation.png").mkdir(parents=True)
    assert _validate(pz, cat, tmp_path / "r2") == 2
    assert "photoz_validation.png is a folder" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "photoz_metrics.json").exists()


def test_colours_json_in_a_bad_place_is_one_error_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "colours.json"
    assert main(["photoz", "colours", "--table", str(tmp_path / "absent.csv"), "--bands", "NB785", "NB795",
                 "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--json {out}: " in err and "file is a file, not a folder" in err
