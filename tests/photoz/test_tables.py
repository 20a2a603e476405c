"""Co-add tables: pivoting, missing bands and errors that name the file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import CatalogError, InputFileError
from lumos_ops.photoz.tables import (
    pivot_coadds,
    read_coadds,
    read_magnitude_catalog,
    read_photoz_table,
    read_redshift_catalog,
)


def _long() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ref_id": [5, 5, 2, 2, 2],
            "band": ["NB685", "NB455", "NB455", "NB685", "NB845"],
            "flux": [10.0, 1.0, 2.0, np.nan, 3.0],
            "flux_err": [1.0, 0.5, 0.5, np.nan, 1.0],
        }
    )


def test_pivot_sorts_sources_and_bands_and_marks_missing() -> None:
    wide = pivot_coadds(_long())
    np.testing.assert_array_equal(wide.ref_id, [2, 5])
    assert wide.bands == ("NB455", "NB685", "NB845")
    np.testing.assert_array_equal(wide.flux, [[2.0, np.nan, 3.0], [1.0, 10.0, np.nan]])
    np.testing.assert_array_equal(wide.flux_err, [[0.5, np.nan, 1.0], [0.5, 1.0, np.nan]])
    frame = wide.flux_frame()
    assert frame.loc[5, "NB685"] == 10.0 and frame.index.name == "ref_id"


def test_database_column_names_and_method_selection() -> None:
    table = _long().rename(columns={"flux": "flux_njy", "flux_err": "flux_err_njy"})
    assert pivot_coadds(table).flux.shape == (2, 3)
    two = pd.concat([_long().assign(method="lumos"), _long().assign(method="aperture", flux=_long().flux * 0 + 99.0)], ignore_index=True)
    with pytest.raises(CatalogError, match=r"several methods \['aperture', 'lumos'\]"):
        pivot_coadds(two, source="c.csv")
    assert np.nanmax(pivot_coadds(two, method="aperture").flux) == 99.0
    with pytest.raises(CatalogError, match="no rows with 'optimal'"):
        pivot_coadds(two, method="optimal")
    bad = two.copy()
    bad.loc[7, "band"] = "NB000"
    with pytest.raises(CatalogError, match="c.csv: row 8: column band='NB000'"):
        pivot_coadds(bad, source="c.csv", method="aperture")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns="flux_err"), r"t.csv: missing column\(s\) \['flux_err'\]"),
        (lambda t: t.assign(band=["NB685", "r", "NB455", "NB685", "NB845"]), "t.csv: row 2: column band='r'"),
        (lambda t: t.assign(flux=["10", "1", "oops", None, "3"]), "t.csv: row 3: column flux='oops' is not a finite number"),
        (lambda t: t.assign(flux_err=[1.0, 0.0, 0.5, np.nan, 1.0]), "t.csv: row 2: column flux_err=0.0 must be > 0"),
        (lambda t: t.assign(ref_id=[5, 5, 2, 2, 2.5]), "t.csv: row 5: ref_id=2.5 must be an integer"),
        (lambda t: t.assign(ref_id=[5, 5, 2, 2, None]), "t.csv: row 5: column ref_id=.* is not a finite number"),
        (lambda t: t.assign(band=["NB685", "NB455", "NB455", "NB455", "NB845"]), r"t.csv: row 4: duplicated \(ref_id, band\) = \(2, NB455\)"),
        (lambda t: t.iloc[:0], "t.csv: the co-add table has no rows"),
    ],
)
def test_bad_tables_name_the_file_row_and_column(edit, message: str) -> None:  # noqa: ANN001
    with pytest.raises(CatalogError, match=message):
        pivot_coadds(edit(_long()), source="t.csv")


def test_reading_files(tmp_path: Path) -> None:
    csv = tmp_path / "coadds.csv"
    _long().to_csv(csv, index=False)
    assert read_coadds(csv).flux.shape == (2, 3)
    parquet = tmp_path / "coadds.parquet"
    _long().to_parquet(parquet)
    np.testing.assert_array_equal(read_coadds(parquet).flux_err, read_coadds(csv).flux_err)
    with pytest.raises(InputFileError, match="no such co-add table file"):
        read_coadds(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputFileError, match="empty.csv: the co-add table file is empty"):
        read_coadds(tmp_path / "empty.csv")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(InputFileError, match="unknown co-add table format '.txt'"):
        read_coadds(tmp_path / "t.txt")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(InputFileError, match="broken.parquet: cannot parse"):
        read_coadds(tmp_path / "broken.parquet")


def test_redshift_catalogue_and_photoz_table(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    pd.DataFrame({"ref_id": [1, 2], "zspec": [0.3, 0.5], "i_auto": [20.0, 21.0], "ra": [0.0, 0.0]}).to_csv(path, index=False)
    cat = read_redshift_catalog(path)
    assert list(cat.columns) == ["zspec", "i_auto"] and cat.loc[2, "zspec"] == 0.5
    pd.DataFrame({"ref_id": [1, 1], "zspec": [0.3, 0.5]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match="row 2: duplicated ref_id 1"):
        read_redshift_catalog(path)
    pd.DataFrame({"ref_id": [1], "zspec": [-1.0]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match="row 1: column zspec=-1.0 must be > -1"):
        read_redshift_catalog(path)
    pz = tmp_path / "pz.csv"
    pd.DataFrame({"ref_id": [1], "z_mean": [0.3]}).to_csv(pz, index=False)
    with pytest.raises(CatalogError, match=r"pz.csv: missing column\(s\) \['z_mode'\]"):
        read_photoz_table(pz)


def test_magnitude_catalogue_needs_only_ref_id_and_i_auto(tmp_path: Path) -> None:
    path = tmp_path / "cat_noz.csv"
    pd.DataFrame({"ref_id": [7, 3], "i_auto": [20.5, np.nan], "ra": [0.0, 1.0]}).to_csv(path, index=False)
    i_auto = read_magnitude_catalog(path)
    assert i_auto.name == "i_auto" and list(i_auto.index) == [7, 3]
    assert i_auto.loc[7] == 20.5 and np.isnan(i_auto.loc[3])
    pd.DataFrame({"ref_id": [1], "zspec": [0.3]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match=r"cat_noz.csv: missing column\(s\) \['i_auto'\]"):
        read_magnitude_catalog(path)
    pd.DataFrame({"ref_id": [1, 1], "i_auto": [20.0, 21.0]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match="row 2: duplicated ref_id 1"):
        read_magnitude_catalog(path)
    pd.DataFrame({"ref_id": [1, 2], "i_auto": [20.0, "bright"]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match="row 2: column i_auto='bright' is not a finite number"):
        read_magnitude_catalog(path)


def test_other_flux_columns() -> None:
    table = _long().rename(columns={"flux": "pdf_peak", "flux_err": "pdf_sigma68"}).assign(flux=-5.0)
    wide = pivot_coadds(table, flux_column="pdf_peak", err_column="pdf_sigma68")
    np.testing.assert_array_equal(wide.flux, pivot_coadds(_long()).flux)
    table.loc[1, "pdf_sigma68"] = -1.0
    with pytest.raises(CatalogError, match="row 2: column pdf_sigma68=-1.0 must be > 0 where pdf_peak is given"):
        pivot_coadds(table, flux_column="pdf_peak", err_column="pdf_sigma68")
    with pytest.raises(CatalogError, match=r"missing column\(s\) \['flux_ivar'\]"):
        pivot_coadds(table, flux_column="flux_ivar", err_column="pdf_sigma68")
