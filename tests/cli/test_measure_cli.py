"""``lumos measure`` through ``lumos_ops.cli.main``: outputs, flags and one-line input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from lumos_ops.bench.synthetic import SyntheticExposure, random_catalog, synthetic_exposure
from lumos_ops.cli import main
from lumos_ops.flags import Flag

SHAPE = (200, 220)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("cli")
    catalog = random_catalog(4, shape=SHAPE, seed=3)
    catalog["x"] = [55.0, 160.2, 60.7, 158.0]
    catalog["y"] = [50.0, 52.4, 150.1, 147.9]
    flux = np.array([30.0, 60.0, 120.0, 240.0])
    image = synthetic_exposure(catalog, flux, shape=SHAPE, seed=5).write(root / "exp.fits")
    catalog.to_csv(root / "cat.csv", index=False)
    catalog.to_parquet(root / "cat.parquet", index=False)
    return Path(image), root / "cat.csv", flux


@pytest.mark.parametrize("method", ["aperture", "modelfit", "optimal"])
def test_writes_one_row_per_target(inputs: tuple[Path, Path, np.ndarray], tmp_path: Path, method: str) -> None:
    image, catalog, flux = inputs
    out = tmp_path / f"{method}.parquet"
    assert main(["measure", str(image), str(catalog), "--method", method, "--out", str(out), "--no-progress"]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns[:4]) == ["ref_id", "flux", "flux_err", "flag"]
    assert table["ref_id"].tolist() == [1, 2, 3, 4]
    assert (table["flag"] == 0).all()
    pull = (table["flux"] - flux) / table["flux_err"]
    assert np.all(np.abs(pull) < 4.5)


def test_csv_output_parquet_catalogue_and_progress(inputs: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, catalog, _ = inputs
    out = tmp_path / "out.csv"
    assert main(["measure", str(image), str(catalog.with_suffix(".parquet")), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 4
    err = capsys.readouterr().err
    assert "4/4" in err and "-> " in err


def test_off_image_targets_are_kept_flagged_or_rejected_with_strict(
    inputs: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, catalog, _ = inputs
    table = pd.read_csv(catalog)
    table.loc[2, "x"] = 5000.0
    moved = tmp_path / "moved.csv"
    table.to_csv(moved, index=False)
    out = tmp_path / "out.csv"
    assert main(["measure", str(image), str(moved), "--out", str(out), "--no-progress"]) == 0
    result = pd.read_csv(out)
    assert result["flag"].iloc[2] == Flag.OFF_IMAGE and np.isnan(result["flux"].iloc[2])
    assert "row 3 (ref_id 3)" in capsys.readouterr().err
    assert main(["measure", str(image), str(moved), "--out", str(tmp_path / "strict.csv"), "--strict", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 3" in err and "Traceback" not in err
    assert not (tmp_path / "strict.csv").exists()


def _bad_fits(tmp_path: Path) -> Path:
    path = tmp_path / "nohdr.fits"
    fits.PrimaryHDU(np.zeros((50, 50), dtype=np.float32)).writeto(path)
    return path


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_image", "no such file"),
        ("not_fits", "not a readable FITS image"),
        ("no_header", "missing required header keyword"),
        ("missing_column", "missing column(s) r50"),
        ("bad_suffix", "unknown output format '.txt'"),
        ("all_off", "lie off the image"),
        ("model_without_lumos", "only the lumos method takes a model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    inputs: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    image, catalog, _ = inputs
    out = tmp_path / "out.csv"
    extra: list[str] = []
    if case == "missing_image":
        image = tmp_path / "absent.fits"
    elif case == "not_fits":
        image = catalog
    elif case == "no_header":
        image = _bad_fits(tmp_path)
    elif case == "missing_column":
        table = pd.read_csv(catalog).drop(columns=["r50"])
        catalog = tmp_path / "cat.csv"
        table.to_csv(catalog, index=False)
    elif case == "bad_suffix":
        out = tmp_path / "out.txt"
    elif case == "all_off":
        table = pd.read_csv(catalog)
        table["x"] += 1e4
        catalog = tmp_path / "cat.csv"
        table.to_csv(catalog, index=False)
    elif case == "model_without_lumos":
        extra = ["--model", "net.pt"]
    code = main(["measure", str(image), str(catalog), "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lumos measure: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert not out.exists()


def test_existing_output_is_not_clobbered_on_failure(inputs: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    image, catalog, _ = inputs
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    assert main(["measure", str(tmp_path / "absent.fits"), str(catalog), "--out", str(out)]) == 2
    assert out.read_text() == "precious\n"
    assert main(["measure", str(image), str(catalog), "--out", str(out), "--no-progress"]) == 0
    assert len(pd.read_csv(out)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_help_documents_the_flag_bits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["measure", "--help"])
    text = capsys.readouterr().out
    for flag in Flag:
        if flag.value:
            assert f"{int(flag)}={flag.name}" in text


def test_catalogued_neighbours_are_fitted_unless_told_not_to(tmp_path: Path) -> None:
    catalog = random_catalog(2, shape=SHAPE, seed=3)
    catalog["x"], catalog["y"], catalog["r50"] = [100.0, 104.5], [100.0, 101.0], [0.8, 0.8]
    flux = np.array([100.0, 300.0])
    image = synthetic_exposure(catalog, flux, shape=SHAPE, seed=6).write(tmp_path / "pair.fits")
    catalog.to_csv(tmp_path / "pair.csv", index=False)
    tables = {}
    for name, extra in (("fit", []), ("plain", ["--no-neighbours"])):
        out = tmp_path / f"{name}.csv"
        argv = ["measure", str(image), str(tmp_path / "pair.csv"), "--method", "optimal", "--out", str(out), "--no-progress"]
        assert main(argv + extra) == 0
        tables[name] = pd.read_csv(out)
    fit, plain = tables["fit"], tables["plain"]
    blended = int(Flag.BLENDED)
    assert (fit["flag"].to_numpy() & blended).all() and not (plain["flag"].to_numpy() & blended).any()
    assert (fit["neighbour_variance"] > 1.2).all() and "neighbour_variance" not in plain
    assert plain["flux"][0] > 1.5 * flux[0]  # the brighter neighbour's light
    assert np.all(np.abs(fit["flux"] - flux) < 3 * fit["flux_err"])


def test_a_sky_gradient_is_taken_out_unless_told_to_keep_it(tmp_path: Path) -> None:
    """A 40-sigma tilt across a 256 px frame changes the aperture errors only with --keep-gradient."""
    shape = (256, 256)
    catalog = random_catalog(4, shape=shape, margin=60, seed=8)
    exposure = synthetic_exposure(catalog, np.full(4, 50.0), shape=shape, seed=9)
    sigma = float(np.std(exposure.adu[:20, :20]))
    adu = np.asarray(exposure.adu, dtype=np.float64) + 40.0 * sigma * np.arange(shape[1])[None, :] / shape[1]
    image = SyntheticExposure(adu=adu.astype(np.float32), header=exposure.header, flux=exposure.flux).write(tmp_path / "tilt.fits")
    catalog.to_csv(tmp_path / "tilt.csv", index=False)
    errors = {}
    for name, extra in (("flat", []), ("kept", ["--keep-gradient"])):
        out = tmp_path / f"{name}.csv"
        argv = ["measure", str(image), str(tmp_path / "tilt.csv"), "--out", str(out), "--no-progress"]
        assert main(argv + extra) == 0
        errors[name] = pd.read_csv(out)["flux_err"].to_numpy()
    assert np.all(errors["kept"] > 1.2 * errors["flat"])


def test_cheap_checks_fail_before_anything_is_measured(
    inputs: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """--strict's off-image rows, a missing output directory and a bad catalogue are refused before the
    measurement (which would take minutes on a real CCD) and before the exposure is read."""
    import lumos_ops.io.exposure
    import lumos_ops.measure

    def never(*args, **kwargs):
        raise AssertionError("measured although the inputs were already known to be bad")

    monkeypatch.setattr(lumos_ops.measure, "measure_exposure", never)
    image, catalog, _ = inputs
    table = pd.read_csv(catalog)
    table.loc[2, "x"] = 5000.0
    moved = tmp_path / "moved.csv"
    table.to_csv(moved, index=False)
    assert main(["measure", str(image), str(moved), "--out", str(tmp_path / "o.csv"), "--strict"]) == 2
    assert "row 3 (ref_id 3)" in capsys.readouterr().err
    assert main(["measure", str(image), str(catalog), "--out", str(tmp_path / "no" / "dir" / "o.csv")]) == 2
    assert "the output directory" in capsys.readouterr().err
    monkeypatch.setattr(lumos_ops.io.exposure, "read_exposure", never)
    table.loc[1, "q"] = 1.5
    table.to_csv(moved, index=False)
    assert main(["measure", str(image), str(moved), "--out", str(tmp_path / "o.csv")]) == 2
    assert "row 2: q=1.5 outside" in capsys.readouterr().err
