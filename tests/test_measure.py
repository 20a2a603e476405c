"""lumos_ops.measure: the method registry and measure_exposure on a synthetic CCD (the ``scene`` fixture is in
tests/conftest.py; prepare_targets and its TargetContext: test_target_context.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops import measure as measure_module
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.io.exposure import Exposure, read_exposure
from lumos_ops.measure import LONG_COLUMNS, MEASURE_METHODS, get_method, measure_exposure
from lumos_ops.target_context import TargetContext


def test_measure_exposure_long_format_and_accuracy(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, flux = scene
    table = measure_exposure(exposure, catalog, methods=("aperture", "modelfit", "optimal"), chunk_size=4)
    assert list(table.columns[: len(LONG_COLUMNS)]) == list(LONG_COLUMNS)
    assert len(table) == 27
    assert table["method"].tolist() == ["aperture"] * 9 + ["modelfit"] * 9 + ["optimal"] * 9
    assert (table["band"] == "NB685").all()
    for method, rows in table.groupby("method", sort=False):
        assert rows["ref_id"].tolist() == catalog["ref_id"].tolist(), method
        flags = rows["flag"].to_numpy()
        off = (flags & Flag.OFF_IMAGE) != 0
        assert off.sum() == 1 and np.isnan(rows["flux"].to_numpy()[off]).all()
        good = flags == 0
        assert good.sum() >= 6, method
        pull = (rows["flux"].to_numpy()[good] - flux[good]) / rows["flux_err"].to_numpy()[good]
        assert np.all(np.abs(pull) < 4.5), (method, pull)
        edge = ~off & (catalog["x"].to_numpy() > 290)
        assert flags[edge][0] & Flag.EDGE and np.isfinite(rows["flux"].to_numpy()[edge][0])
    assert np.isfinite(table.loc[table["method"] == "aperture", "aperture_a"].to_numpy()[:3]).all()


def test_the_error_floor_is_added_to_every_method_and_defaults_to_the_surveys(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    import dataclasses

    from lumos_ops.survey import paus_survey

    exposure, catalog, _ = scene
    plain = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), error_floor=0.0)
    floored = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), error_floor=0.05)
    np.testing.assert_array_equal(floored["flux"], plain["flux"])
    np.testing.assert_allclose(floored["flux_err_stat"], plain["flux_err"])
    np.testing.assert_allclose(floored["flux_err"], np.hypot(plain["flux_err"], 0.05 * plain["flux"].abs()))
    assert (plain["floor_rho"].dropna() == 0.0).all() and (floored["floor_rho"].dropna() > 0.0).all()
    own = dataclasses.replace(exposure, survey=dataclasses.replace(paus_survey(), flux_error_floor=0.03))
    table = measure_exposure(own, catalog, methods=("optimal",))
    assert (table["error_floor"].dropna() == 0.03).all() and table["error_floor"].notna().sum() == 8
    # a method's own floor (the survey's, or given per method)
    per_method = dataclasses.replace(exposure, survey=dataclasses.replace(
        paus_survey(), flux_error_floor=0.03, method_error_floors={"aperture": 0.07}))
    table = measure_exposure(per_method, catalog, methods=("aperture", "optimal"))
    assert table.groupby("method")["error_floor"].max().to_dict() == {"aperture": 0.07, "optimal": 0.03}
    table = measure_exposure(per_method, catalog, methods=("aperture", "optimal"), error_floor={"optimal": 0.01})
    assert table.groupby("method")["error_floor"].max().to_dict() == {"aperture": 0.07, "optimal": 0.01}
    # a method's own neighbour floor, the same way
    near = dataclasses.replace(exposure, survey=dataclasses.replace(
        paus_survey(), neighbour_error_floor=0.05, method_neighbour_error_floors={"optimal": 0.02}))
    table = measure_exposure(near, catalog, methods=("aperture", "optimal"))
    assert table.groupby("method")["neighbour_error_floor"].max().to_dict() == {"aperture": 0.05, "optimal": 0.02}
    table = measure_exposure(near, catalog, methods=("aperture", "optimal"), neighbour_error_floor={"aperture": 0.01})
    assert table.groupby("method")["neighbour_error_floor"].max().to_dict() == {"aperture": 0.01, "optimal": 0.02}


def test_measure_exposure_with_progress_bar(scene: tuple[Exposure, pd.DataFrame, np.ndarray], capsys: pytest.CaptureFixture[str]) -> None:
    exposure, catalog, _ = scene
    table = measure_exposure(exposure, catalog.iloc[:3], progress=True)
    assert len(table) == 3
    assert "3/3" in capsys.readouterr().err


def test_registry_entries_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(MEASURE_METHODS) >= {"aperture", "modelfit", "optimal", "lumos"}
    assert MEASURE_METHODS["lumos"] == "lumos_ops.lumos.method:LumosMethod"
    for name in ("aperture", "modelfit", "optimal"):
        assert get_method(name).name == name
    with pytest.raises(LumosValueError, match="unknown photometry method 'psf'"):
        get_method("psf")
    with pytest.raises(LumosValueError, match="does not accept option"):
        get_method("aperture", model="x.pt")
    monkeypatch.setitem(MEASURE_METHODS, "missing", "lumos_ops.not_written_yet:Method")
    with pytest.raises(LumosValueError, match="'missing' is not available: cannot import"):
        get_method("missing")


def test_options_are_routed_and_unknown_ones_rejected(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    table = measure_exposure(exposure, catalog.iloc[:2], methods=("aperture", "optimal"), light_fraction=0.5, max_iter=3)
    assert np.allclose(table.loc[table["method"] == "aperture", "aperture_light"], 0.5, atol=1e-4)
    with pytest.raises(LumosValueError, match="accepted by none"):
        measure_exposure(exposure, catalog, methods=("aperture",), model="net.pt")
    with pytest.raises(LumosValueError, match="at least one"):
        measure_exposure(exposure, catalog, methods=())


def test_custom_method_results_are_checked(scene: tuple[Exposure, pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    exposure, catalog, _ = scene

    class Broken:
        name = "broken"

        def measure(self, ctx: TargetContext) -> pd.DataFrame:
            return pd.DataFrame({"flux": np.zeros(ctx.n)})

    monkeypatch.setattr(measure_module, "_method_class", lambda name: Broken)
    with pytest.raises(LumosValueError, match="no column"):
        measure_exposure(exposure, catalog, methods=("broken",))


def test_masked_centre_is_flagged(scene: tuple[Exposure, pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    exposure, catalog, _ = scene
    data = exposure.data.copy()
    row = 0
    data[int(round(catalog["y"][row])), int(round(catalog["x"][row]))] = np.nan
    masked = Exposure(**{**exposure.__dict__, "data": data})
    table = measure_exposure(masked, catalog.iloc[:1], methods=("aperture", "optimal"))
    assert (table["flag"].to_numpy() & Flag.MASKED).all()
    assert np.isfinite(table["flux"]).all()


def test_survey_simulator_exposure_with_wcs_and_truth(tmp_path: Path) -> None:
    """The nightly-pipeline path: ra/dec catalogue + WCS exposure from lumos_ops.sim, checked against the truth."""
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.sim import Artefacts, SurveyConfig, simulate_survey

    quiet = Artefacts(scattered_light=False, banding=False, stars=False, cosmic_rays=False, bad_columns=False,
                      crosstalk=False, faint_galaxies=False)
    survey = simulate_survey(
        SurveyConfig(ccd_shape=(300, 300), bands=("NB685",), n_exposures=1, n_epochs=1, n_galaxies=20, artefacts=quiet, seed=8),
        tmp_path,
    )
    exposure = read_exposure(survey.exposure_paths[0])
    catalog = read_catalog(survey.catalog_path)
    assert exposure.wcs is not None and "x" not in catalog.columns
    table = measure_exposure(exposure, catalog, methods=("aperture", "optimal"))
    truth = pd.read_parquet(survey.truth_path)
    truth = truth[truth["expnum"] == exposure.expnum].set_index("ref_id")
    for method, rows in table.groupby("method"):
        rows = rows.set_index("ref_id")
        common = rows.index.intersection(truth.index)
        assert len(common) >= 8
        np.testing.assert_allclose(rows.loc[common, "x"], truth.loc[common, "x"], atol=1e-3)
        np.testing.assert_allclose(rows.loc[common, "y"], truth.loc[common, "y"], atol=1e-3)
        good = common[(rows.loc[common, "flag"].to_numpy() & ~int(Flag.NEGATIVE_MODEL)) == 0]
        pull = (rows.loc[good, "flux"] - truth.loc[good, "flux_true"]) / rows.loc[good, "flux_err"]
        # Neighbours' wings in the 30-45 px annulus push the background up a little: loose bounds.
        assert abs(np.median(pull)) < 1.0, method
        assert np.mean(np.abs(pull) < 4) > 0.8, (method, pull.describe())
        assert (rows.loc[rows.index.difference(truth.index), "flag"].to_numpy() & int(Flag.OFF_IMAGE)).all()


def test_catalogue_entirely_off_the_image_gives_off_image_rows(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    far = catalog.assign(x=catalog["x"] + 1e5)
    table = measure_exposure(exposure, far, methods=("aperture", "optimal"))
    assert len(table) == 2 * len(catalog)
    assert (table["flag"] == Flag.OFF_IMAGE).all() and table["flux"].isna().all()
    assert table["ref_id"].tolist() == far["ref_id"].tolist() * 2


def test_lumos_rows_carry_the_models_shared_error(scene: tuple[Exposure, pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
    from lumos_ops.lumos.shared_error import SharedError

    exposure, catalog, _ = scene
    base = load_checkpoint(None, device="cpu")
    shared = SharedError((0.0, 5.0, 20.0, np.inf), (0.0, 0.1, 0.3), (40, 40, 40), "test")
    path = tmp_path / "with_shared.pt"
    save_checkpoint(path, base.net, arch=base.arch, normalization=base.normalization,
                    metadata={**base.metadata, "shared_error": shared.to_dict()})
    table = measure_exposure(exposure, catalog, methods=("optimal", "lumos"), model=path)
    lumos = table[table["method"] == "lumos"]
    on = np.isfinite(lumos["flux"].to_numpy())
    # looked up at the SNR of the errors before the survey's error floor, which caps the SNR near 1 / floor
    expected = shared.rho_at(lumos["flux"].to_numpy() / lumos["flux_err_stat"].to_numpy())
    assert lumos["shared_rho"].to_numpy()[on] == pytest.approx(expected[on])
    assert table.loc[table["method"] == "optimal", "shared_rho"].isna().all()
    # the shipped default records none: its rows have no such column
    plain = measure_exposure(exposure, catalog.iloc[:3], methods=("lumos",))
    assert "shared_rho" not in plain


def test_an_unreadable_shared_error_names_the_checkpoint(scene: tuple[Exposure, pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    from lumos_ops.exceptions import ModelError
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint

    exposure, catalog, _ = scene
    base = load_checkpoint(None, device="cpu")
    path = tmp_path / "bad_shared.pt"
    save_checkpoint(path, base.net, arch=base.arch, normalization=base.normalization,
                    metadata={**base.metadata, "shared_error": {"rho": [0.1]}})
    with pytest.raises(ModelError, match=r"bad_shared.pt: metadata 'shared_error' is unreadable .*lumos model shared-error"):
        measure_exposure(exposure, catalog.iloc[:3], methods=("lumos",), model=path)


def test_a_residual_axis_adds_the_optimal_fits_model_residual(scene: tuple[Exposure, pd.DataFrame, np.ndarray],
                                                              tmp_path: Path) -> None:
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
    from lumos_ops.lumos.shared_error import SharedError

    exposure, catalog, _ = scene
    base = load_checkpoint(None, device="cpu")
    shared = SharedError((0.0, 10.0, np.inf), (0.05, 0.2), residual_cuts=(0.01,), rho_by_residual=((0.0, 0.1), (0.3, 0.6)))
    path = tmp_path / "with_residual.pt"
    save_checkpoint(path, base.net, arch=base.arch, normalization=base.normalization,
                    metadata={**base.metadata, "shared_error": shared.to_dict()})
    table = measure_exposure(exposure, catalog, methods=("optimal", "lumos"), model=path)
    lumos, optimal = table[table["method"] == "lumos"], table[table["method"] == "optimal"]
    on = np.isfinite(lumos["flux"].to_numpy())
    # the same optimal fit serves both methods
    np.testing.assert_array_equal(lumos["model_residual"].to_numpy()[on], optimal["model_residual"].to_numpy()[on])
    snr = lumos["flux"].to_numpy()[on] / lumos["flux_err"].to_numpy()[on]
    assert np.stack(lumos["shared_rho_bins"].to_numpy()[on]).tolist() == shared.rho_rows(snr).tolist()
    assert all(cuts == [0.01] for cuts in lumos["shared_residual_cuts"].to_numpy()[on])
