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
