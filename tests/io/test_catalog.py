"""Tests for lumos_ops.io.catalog: catalogue contract, row-level error messages, positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.wcs import WCS

from lumos_ops.exceptions import CatalogError, InputFileError
from lumos_ops.io.catalog import read_catalog, target_pixels, validate_catalog


def _table(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ref_id": np.arange(1, n + 1),
            "ra": 150.0 + np.arange(n) * 1e-3,
            "dec": 2.2 + np.arange(n) * 1e-3,
            "r50": np.full(n, 0.6),
            "sersic_n": np.full(n, 1.0),
            "q": np.full(n, 0.7),
            "pa": np.full(n, 30.0),
            "i_auto": np.full(n, 21.5),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_csv_and_parquet(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cat{suffix}"
    table = _table()
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    read = read_catalog(path)
    assert read["ref_id"].dtype == np.int64
    pd.testing.assert_frame_equal(read, table, check_dtype=False)


def test_missing_columns_are_listed() -> None:
    with pytest.raises(CatalogError, match="missing column.*sersic_n.*ra/dec or x/y"):
        validate_catalog(_table().drop(columns=["sersic_n", "ra", "dec"]), source="c.csv")


def test_bad_value_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    table = _table().astype({"r50": object})
    table.loc[2, "r50"] = "big"
    table.to_csv(path, index=False)
    with pytest.raises(CatalogError, match=r"bad.csv: row 3: column r50='big' is not a number"):
        read_catalog(path)


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [("q", 1.5, "row 2: q=1.5 outside"), ("r50", 0.0, "row 2: r50=0.0"), ("i_auto", np.nan, "row 2: column i_auto is empty")],
)
def test_out_of_range_values(column: str, value: float, match: str) -> None:
    table = _table()
    table.loc[1, column] = value
    with pytest.raises(CatalogError, match=match):
        validate_catalog(table)


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [("pa", 1e40, r"row 2: pa=1e\+40 outside its valid range \[-360.0, 360.0\] deg"),
     ("dec", 500.0, r"row 2: dec=500.0 outside its valid range \[-90.0, 90.0\] deg"),
     ("zspec", np.inf, r"row 2: zspec=inf outside"), ("zspec", 1e40, r"row 2: zspec=1e\+40 outside")],
)
def test_values_a_database_real_column_cannot_hold_are_refused(column: str, value: float, match: str) -> None:
    table = _table().assign(zspec=[0.5, 0.7, np.nan, -99.0])
    assert validate_catalog(table)["zspec"].isna().sum() == 1  # a missing redshift and a sentinel are allowed
    table.loc[1, column] = value
    with pytest.raises(CatalogError, match=match):
        validate_catalog(table, source="c.parquet")


def test_a_row_needs_one_whole_position_when_both_kinds_are_given() -> None:
    table = _table().assign(x=[10.0, 20.0, 30.0, 40.0], y=[10.0, 20.0, 30.0, 40.0])
    table.loc[0, ["ra", "dec"]] = np.nan  # placed by its pixels
    table.loc[1, ["x", "y"]] = np.nan  # placed on the sky
    assert len(validate_catalog(table)) == 4
    table.loc[2, ["ra", "x"]] = np.nan  # half of each pair: nowhere
    with pytest.raises(CatalogError, match=r"c.csv: row 3: no position: neither ra/dec nor x/y are both finite"):
        validate_catalog(table, source="c.csv")


def test_a_semi_major_radius_becomes_the_circularised_r50(tmp_path: Path) -> None:
    table = _table().rename(columns={"r50": "r50_major"})
    table["q"] = [1.0, 0.25, 0.49, 0.7]
    path = tmp_path / "galfit.csv"
    table.to_csv(path, index=False)
    read = read_catalog(path)
    assert np.allclose(read["r50"], 0.6 * np.sqrt(table["q"]))
    assert np.allclose(read["r50_major"], 0.6)
    both = _table().assign(r50_major=9.0)
    assert np.allclose(validate_catalog(both)["r50"], 0.6)  # r50 given: it is the radius used
    with pytest.raises(CatalogError, match=r"row 3: r50_major=0.0 outside"):
        validate_catalog(table.assign(r50_major=[0.6, 0.6, 0.0, 0.6]))
    with pytest.raises(CatalogError, match=r"missing column\(s\) r50 \(or r50_major\)"):
        validate_catalog(_table().drop(columns=["r50"]))


def test_duplicated_ref_id() -> None:
    table = _table()
    table.loc[3, "ref_id"] = 1
    with pytest.raises(CatalogError, match="row 4: duplicated ref_id 1"):
        validate_catalog(table)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such catalogue"):
        read_catalog(tmp_path / "none.csv")
    (tmp_path / "cat.txt").write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match="unknown catalogue format"):
        read_catalog(tmp_path / "cat.txt")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputFileError, match="cannot parse"):
        read_catalog(tmp_path / "broken.parquet")


def _wcs() -> WCS:
    """A TAN WCS at 0.263 arcsec per pixel with (150, 2.2) deg at pixel (100, 50), 0-based."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.2]
    wcs.wcs.crpix = [101.0, 51.0]
    wcs.wcs.cdelt = [-0.263 / 3600, 0.263 / 3600]
    return wcs


def test_target_pixels_prefers_wcs_and_falls_back_to_xy() -> None:
    wcs = _wcs()
    table = _table()
    x, y = target_pixels(table, wcs)
    assert x[0] == pytest.approx(100.0) and y[0] == pytest.approx(50.0)
    assert y[1] - y[0] == pytest.approx(3.6 / 0.263, rel=1e-3)
    pix = table.drop(columns=["ra", "dec"]).assign(x=[1.0, 2.0, 3.0, 4.0], y=[5.0, 6.0, 7.0, 8.0])
    x, y = target_pixels(validate_catalog(pix), None)
    np.testing.assert_array_equal(x, [1, 2, 3, 4])
    with pytest.raises(CatalogError, match="no celestial WCS"):
        target_pixels(table, None)


def test_a_row_without_sky_position_takes_its_pixels_and_a_disagreement_is_reported(caplog) -> None:
    import logging

    wcs = _wcs()
    table = _table()
    sky_x, sky_y = target_pixels(table, wcs)
    both = table.assign(x=sky_x + 0.2, y=sky_y - 0.2)
    both.loc[2, ["ra", "dec"]] = np.nan
    both.loc[2, ["x", "y"]] = [40.0, 60.0]
    with caplog.at_level(logging.WARNING, logger="lumos_ops.io.catalog"):
        x, y = target_pixels(validate_catalog(both), wcs, source="exp.fits")
    assert (x[2], y[2]) == (40.0, 60.0)  # its pixels, not "off the image"
    np.testing.assert_allclose(np.delete(x, 2), np.delete(sky_x, 2))  # the others: ra/dec through the WCS
    assert "differ" not in caplog.text  # 0.3 px apart: the same positions
    shifted = both.assign(ra=both["ra"] + 0.01)
    with caplog.at_level(logging.WARNING, logger="lumos_ops.io.catalog"):
        target_pixels(validate_catalog(shifted), wcs, source="exp.fits")
    assert "exp.fits: the catalogue's x/y and its ra/dec through the image's WCS differ by a median 137" in caplog.text
