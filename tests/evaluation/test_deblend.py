"""Deblending stamps and bias by neighbour distance (evaluation/deblend.py)."""

import numpy as np
import pandas as pd
import pytest

from lumos_ops.evaluation.deblend import bias_by_distance, excess_by_distance, make_deblend_set, rescale_catalog
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.seds import mag_to_njy

from lumos_helpers import write_exposure


def test_rescale_catalog_keeps_colours():
    catalog = pd.DataFrame({"i_auto": [20.0, 21.0], "flux_nJy_NB455": [100.0, 30.0], "flux_nJy_NB685": [200.0, 90.0]})
    out = rescale_catalog(catalog, 22.0)
    assert (out.i_auto == 22.0).all()
    np.testing.assert_allclose(out.flux_nJy_NB455 / out.flux_nJy_NB685, catalog.flux_nJy_NB455 / catalog.flux_nJy_NB685)
    np.testing.assert_allclose(out.flux_nJy_NB455, [100 * 10 ** -0.8, 30 * 10 ** -0.4])


def test_deblend_set_targets_and_neighbours(tmp_path):
    p1, catalog = write_exposure(tmp_path / "e1.fits", seed=3)
    path = make_deblend_set([str(p1)], catalog, tmp_path / "deblend", n_stamps=12, seed=1)
    meta = pd.read_parquet(path / "meta.parquet")
    assert (meta.i_auto == 22.0).all() and (meta.nbr_i_auto == 20.0).all()
    np.testing.assert_allclose(meta.nbr_flux / meta.flux, 10 ** 0.8, rtol=1e-9)  # flat spectrum: 2 mag brighter
    distance = np.hypot(meta.nbr_dx, meta.nbr_dy)
    assert distance.between(0.0, 20.0).all()
    zp_flux = mag_to_njy(22.0) * 10 ** (0.4 * (26.0 - 31.4))
    np.testing.assert_allclose(meta.flux, zp_flux, rtol=1e-9)
    control = make_deblend_set([str(p1)], catalog, tmp_path / "control", n_stamps=12, seed=1, neighbours=False)
    alone = pd.read_parquet(control / "meta.parquet")
    assert (alone.nbr_ref_id < 0).all()
    np.testing.assert_array_equal(alone.flux, meta.flux)
    np.testing.assert_array_equal(alone.source_exposure, meta.source_exposure)


def test_deblend_set_teahupoo_targets(tmp_path):
    p1, catalog = write_exposure(tmp_path / "e1.fits", seed=3)
    own = pd.read_parquet(make_deblend_set([str(p1)], catalog, tmp_path / "own", n_stamps=40, seed=1) / "meta.parquet")
    drawn_path = make_deblend_set([str(p1)], catalog, tmp_path / "drawn", n_stamps=40, seed=1,
                                  target_flux={"flux_source": "band_distribution", "flux_population": 5000})
    drawn = pd.read_parquet(drawn_path / "meta.parquet")
    assert (drawn.i_auto == 22.0).all()
    assert drawn.flux.nunique() > 30 and own.flux.nunique() == 1  # independent draws vs the one flat-spectrum SED
    np.testing.assert_array_equal(drawn.nbr_flux, own.nbr_flux)  # neighbours keep their own SED at i = 20
    np.testing.assert_array_equal(drawn.nbr_dx, own.nbr_dx)
    with pytest.raises(LumosValueError, match="unknown fields.*neighbour_fraction"):
        make_deblend_set([str(p1)], catalog, tmp_path / "bad", n_stamps=4, target_flux={"neighbour_fraction": 0.0})


def test_bias_by_distance_default_bins_have_an_edge_at_5_px():
    truth = np.full(3, 10.0)
    rows = bias_by_distance({"a": truth}, truth, np.array([4.9, 5.0, 20.0]))["a"]
    assert [(r["d_lo"], r["d_hi"]) for r in rows][1:3] == [(2.5, 5.0), (5.0, 7.5)]
    assert [r["n"] for r in rows][1:3] == [1, 1] and rows[-1]["n"] == 1


def test_bias_by_distance():
    truth = np.full(8, 10.0)
    distance = np.array([1, 1, 3, 3, 9, 9, 19.5, 20.0])
    rows = bias_by_distance({"a": truth * 1.1}, truth, distance, edges=[0, 2, 10, 20])
    assert [r["n"] for r in rows["a"]] == [2, 4, 2]
    assert all(r["bias"] == pytest.approx(0.1) for r in rows["a"])
    with pytest.raises(LumosValueError, match="increasing"):
        bias_by_distance({"a": truth}, truth, distance, edges=[1.0])


def test_excess_by_distance_is_the_paired_difference():
    truth = np.full(4, 10.0)
    distance = np.array([1.0, 1.0, 15.0, 15.0])
    rows = excess_by_distance({"a": np.array([14.0, 16.0, 9.0, 9.0])}, {"a": np.array([9.0, 9.0, 9.0, 9.0]),
                              "b": truth}, truth, distance, edges=[0, 10, 20])
    assert set(rows) == {"a"}
    assert rows["a"][0]["bias"] == pytest.approx(0.6) and rows["a"][1]["bias"] == pytest.approx(0.0)
