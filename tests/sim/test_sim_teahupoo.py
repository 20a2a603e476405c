"""TEAHUPOO generator: layout, physics of the stamps, determinism (the TrainingSet reader streaming the
set: tests/io/test_training_set.py; the ``training_dir`` fixture is in tests/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lumos_ops.constants import band_epoch_index
from lumos_ops.cutouts import cut_stamps
from lumos_ops.exceptions import CatalogError, InputFileError, LumosValueError
from lumos_ops.io.exposure import read_exposure
from lumos_ops.sim import FluxSource, SurveyManifest, TeahupooConfig, TrainingSet, generate_training_set
from lumos_ops.sim.teahupoo import META_COLUMNS

ARCHITECTURE_META = (
    "stamp_id", "shard", "row", "band", "epoch", "band_epoch", "ccd", "ccd_x", "ccd_y", "i_auto", "r50",
    "sersic_n", "q", "pa", "dx", "dy", "flux", "exptime", "psf_fwhm", "psf_beta", "source_exposure", "split",
)


def test_layout_matches_architecture(training_dir) -> None:
    out, manifest, config = training_dir
    data = json.loads((out / "manifest.json").read_text())
    assert data["format"] == "lumos-teahupoo" and data["version"] == 1
    assert data["seed"] == 5 and data["n_stamps"] == 150 and data["stamp_size"] == 40
    assert data["pixel_scale"] == pytest.approx(0.263)
    assert data["shards"] == [
        {"file": "shards/shard-00000.npy", "n": 64},
        {"file": "shards/shard-00001.npy", "n": 64},
        {"file": "shards/shard-00002.npy", "n": 22},
    ]
    meta = pd.read_parquet(out / "meta.parquet")
    assert tuple(meta.columns[: len(ARCHITECTURE_META)]) == ARCHITECTURE_META
    assert tuple(meta.columns) == META_COLUMNS
    assert (meta.stamp_id == np.arange(150)).all()
    assert (meta.shard * 64 + meta.row == meta.stamp_id).all()
    shard = np.load(out / "shards/shard-00002.npy", mmap_mode="r")
    assert isinstance(shard, np.memmap) and shard.shape == (22, 2, 40, 40) and shard.dtype == np.float32
    assert manifest.stamps_per_s > 0


def test_meta_consistent_with_source_exposures(training_dir) -> None:
    out, _, config = training_dir
    meta = pd.read_parquet(out / "meta.parquet")
    assert set(meta.split) <= {"train", "val", "test"} and (meta.split == "train").mean() > 0.75
    assert meta.flux.between(0.0, 1000.0).all()
    assert meta.dx.between(-0.5, 0.5).all() and meta.dy.between(-0.5, 0.5).all()
    assert meta.dx.std() > 0.2
    half = config.stamp_size // 2
    for path, rows in meta.groupby("source_exposure"):
        exposure = read_exposure(path)
        assert (rows.band == exposure.band).all()
        assert (rows.epoch == exposure.epoch).all()
        assert (rows.band_epoch == band_epoch_index(exposure.band, exposure.epoch)).all()
        assert (rows.ccd == exposure.ccdnum).all()
        assert (rows.exptime == exposure.exptime).all()
        assert (rows.psf_fwhm == exposure.psf_fwhm).all() and (rows.psf_beta == exposure.psf_beta).all()
        ny, nx = exposure.shape
        assert rows.ccd_x.between(half, nx - 1 - half).all() and rows.ccd_y.between(half, ny - 1 - half).all()


def test_stamps_are_background_plus_poisson_galaxy(training_dir) -> None:
    out, _, config = training_dir
    ts = TrainingSet(out)
    meta = ts.meta
    images = ts.images(np.arange(len(ts)))
    # Channel 1: unit-flux model, centred at (S//2 + dx, S//2 + dy).
    np.testing.assert_allclose(images[:, 1].sum(axis=(1, 2)), 1.0 - meta.flux_outside, atol=2e-4)
    grid = np.arange(config.stamp_size)
    weights = images[:, 1]
    cx = (weights.sum(axis=1) * grid).sum(axis=1) / weights.sum(axis=(1, 2))
    compact = meta.r50 < 1.0
    np.testing.assert_allclose(cx[compact], config.stamp_size // 2 + meta.dx[compact], atol=0.1)
    # Channel 0 minus the original background is the galaxy with Poisson noise in e-/s.
    residual = []
    for path, rows in meta.groupby("source_exposure"):
        exposure = read_exposure(path)
        background = cut_stamps(exposure.data, rows.ccd_x.to_numpy(), rows.ccd_y.to_numpy(), size=config.stamp_size).data
        galaxy = images[rows.index, 0] - background
        ok = ~np.isnan(galaxy).any(axis=(1, 2))
        counts = galaxy[ok] * rows.exptime.to_numpy()[ok, None, None]
        # Poisson counts are integers in electrons (up to float32 rounding on faint background).
        faint = np.abs(background[ok]) < 100
        np.testing.assert_allclose(counts[faint], np.round(counts[faint]), atol=0.02)
        residual.append(galaxy[ok].sum(axis=(1, 2)) - rows.flux.to_numpy()[ok] * (1 - rows.flux_outside.to_numpy()[ok]))
        expected_sigma = np.sqrt(rows.flux.to_numpy()[ok] / rows.exptime.to_numpy()[ok])
        assert np.all(np.abs(residual[-1]) < 6 * expected_sigma + 1e-3)
    assert sum(len(r) for r in residual) > 100


def test_same_seed_identical_bytes(tmp_path, training_dir, small_survey: SurveyManifest) -> None:
    out, _, config = training_dir
    catalog = pd.read_parquet(small_survey.catalog_path)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's setting must not change the bytes
    try:
        # The fixture cut its stamps in one process; two forked workers write the same bytes.
        generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "again", workers=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    for name in ("manifest.json", "meta.parquet", "shards/shard-00000.npy", "shards/shard-00002.npy"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    other = TeahupooConfig(n_stamps=20, shard_size=64, seed=6, stamp_size=40)
    generate_training_set(other, small_survey.exposure_paths, catalog, tmp_path / "other")
    assert not np.array_equal(TrainingSet(tmp_path / "other").images([0]), TrainingSet(out).images([0]))


def test_held_out_evaluation_stamps_and_flat_spectrum(tmp_path, small_survey: SurveyManifest) -> None:
    catalog = pd.read_parquet(small_survey.catalog_path)
    catalog = catalog[["ref_id", "ra", "dec", "r50", "sersic_n", "q", "pa", "i_auto"]]
    config = TeahupooConfig(n_stamps=6, stamp_size=96, seed=1, edge_margin=10, flux_source=FluxSource.FLAT_SPECTRUM)
    generate_training_set(config, small_survey.exposure_paths[:1], catalog, tmp_path / "eval")
    ts = TrainingSet(tmp_path / "eval")
    assert ts.images([0, 5]).shape == (2, 2, 96, 96)
    meta = ts.meta
    zp = meta.zero_point.to_numpy()
    np.testing.assert_allclose(meta.flux, np.clip(10 ** (-0.4 * (meta.i_auto - zp)), 0, 1000), rtol=1e-9)
    # Stamps larger than the CCD allowance are padded with NaN and counted.
    assert (meta.n_masked > 0).any()


def test_errors_name_the_problem(tmp_path, small_survey: SurveyManifest) -> None:
    catalog = pd.read_parquet(small_survey.catalog_path)
    with pytest.raises(LumosValueError, match="n_stamps"):
        TeahupooConfig(n_stamps=0)
    with pytest.raises(LumosValueError, match="split_fractions"):
        TeahupooConfig(n_stamps=5, split_fractions=(0.5, 0.1, 0.1))
    with pytest.raises(LumosValueError, match="flux_source"):
        TeahupooConfig(n_stamps=5, flux_source="magic")
    with pytest.raises(CatalogError, match="flux_nJy"):
        generate_training_set(
            TeahupooConfig(n_stamps=3, flux_source="catalog"), small_survey.exposure_paths,
            catalog.drop(columns=[c for c in catalog.columns if c.startswith("flux_nJy")]), tmp_path / "x",
        )
    with pytest.raises(LumosValueError, match="too small"):
        generate_training_set(TeahupooConfig(n_stamps=3, stamp_size=400), small_survey.exposure_paths, catalog, tmp_path / "y")
    with pytest.raises(InputFileError, match="no such file"):
        generate_training_set(TeahupooConfig(n_stamps=3), [tmp_path / "missing.fits"], catalog, tmp_path / "z")
    with pytest.raises(InputFileError, match="manifest"):
        TrainingSet(tmp_path / "nothing")


def test_blended_neighbours(tmp_path, small_survey: SurveyManifest) -> None:
    catalog = pd.read_parquet(small_survey.catalog_path)
    config = TeahupooConfig(n_stamps=40, stamp_size=48, seed=2, neighbour_fraction=0.5, neighbour_distance=(6.0, 9.0))
    generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "blend")
    ts = TrainingSet(tmp_path / "blend")
    meta = ts.meta
    blended = meta.nbr_ref_id >= 0
    assert 5 < blended.sum() < 35
    assert (meta.nbr_flux[~blended] == 0).all() and meta.nbr_dx[~blended].isna().all()
    distance = np.hypot(meta.nbr_dx[blended], meta.nbr_dy[blended])
    assert distance.between(6.0, 9.0).all() and (meta.nbr_flux[blended] > 0).all()
    images = ts.images(np.arange(len(ts)))
    # The model channel is the target alone; the cutout holds target + neighbour light.
    np.testing.assert_allclose(images[:, 1].sum(axis=(1, 2)), 1.0 - meta.flux_outside, atol=2e-4)
    light = []
    for path, rows in meta.groupby("source_exposure"):
        exposure = read_exposure(path)
        background = cut_stamps(exposure.data, rows.ccd_x.to_numpy(), rows.ccd_y.to_numpy(), size=48).data
        light.append(pd.Series(np.nansum(images[rows.index, 0] - background, axis=(1, 2)), index=rows.index))
    light = pd.concat(light).sort_index()
    expected = meta.flux + meta.nbr_flux
    bright = expected > 5
    assert bright.sum() >= 3
    np.testing.assert_allclose(light[bright], expected[bright], rtol=0.15)
    with pytest.raises(LumosValueError, match="neighbour_fraction"):
        TeahupooConfig(n_stamps=3, neighbour_fraction=1.5)


def test_band_distribution_flux_is_independent_of_i_auto(tmp_path, small_survey: SurveyManifest) -> None:
    from scipy.stats import spearmanr

    from lumos_ops.constants import NJY_ZEROPOINT

    catalog = pd.read_parquet(small_survey.catalog_path)
    config = TeahupooConfig(n_stamps=600, stamp_size=16, seed=4, flux_source="band_distribution")
    generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "bd")
    meta = pd.read_parquet(tmp_path / "bd" / "meta.parquet")
    assert config.flux_source is FluxSource.BAND_DISTRIBUTION
    # The flux is the clipped band flux of another, independently drawn catalogue row.
    assert (meta.flux_ref_id != meta.ref_id).mean() > 0.9
    by_ref = catalog.set_index("ref_id")
    njy = np.array([by_ref.at[r, f"flux_nJy_{b}"] for r, b in zip(meta.flux_ref_id, meta.band)])
    expected = np.clip(njy * 10.0 ** (0.4 * (meta.zero_point - NJY_ZEROPOINT)), 0.0, 1000.0)
    np.testing.assert_allclose(meta.flux, expected, rtol=1e-9)
    rho_bd = spearmanr(meta.flux, meta.i_auto).statistic
    assert abs(rho_bd) < 0.12, rho_bd
    # Control: with the galaxy's own catalogue flux, flux and i_auto are strongly anti-correlated.
    own = TeahupooConfig(n_stamps=600, stamp_size=16, seed=4, flux_source="catalog")
    generate_training_set(own, small_survey.exposure_paths, catalog, tmp_path / "own")
    meta_own = pd.read_parquet(tmp_path / "own" / "meta.parquet")
    assert (meta_own.flux_ref_id == meta_own.ref_id).all()
    assert spearmanr(meta_own.flux, meta_own.i_auto).statistic < -0.7


def test_flux_population_balances_brightness(tmp_path, small_survey: SurveyManifest) -> None:
    from scipy.stats import spearmanr

    from lumos_ops.constants import NJY_ZEROPOINT
    from lumos_ops.sim.population import draw_galaxies

    catalog = pd.read_parquet(small_survey.catalog_path)
    natural = TeahupooConfig(n_stamps=800, stamp_size=16, seed=4, flux_source="band_distribution",
                             flux_population=5000)
    flat = TeahupooConfig(n_stamps=800, stamp_size=16, seed=4, flux_source="band_distribution",
                          flux_population=5000, flux_count_slope=0.0)
    generate_training_set(natural, small_survey.exposure_paths, catalog, tmp_path / "natural")
    generate_training_set(flat, small_survey.exposure_paths, catalog, tmp_path / "flat")
    m_nat = pd.read_parquet(tmp_path / "natural" / "meta.parquet")
    m_flat = pd.read_parquet(tmp_path / "flat" / "meta.parquet")
    # The fluxes are the band fluxes of rows of the seeded population, not of the catalogue.
    population = draw_galaxies(np.random.default_rng(np.random.SeedSequence([4, 13])), 5000, count_slope=0.0)
    assert m_flat.flux_ref_id.between(0, 4999).all()
    njy = population.to_numpy()[m_flat.flux_ref_id.to_numpy(), [population.columns.get_loc(f"flux_nJy_{b}") for b in m_flat.band]]
    expected = np.clip(njy.astype(float) * 10.0 ** (0.4 * (m_flat.zero_point - NJY_ZEROPOINT)), 0.0, 1000.0)
    np.testing.assert_allclose(m_flat.flux, expected, rtol=1e-9)
    assert abs(spearmanr(m_flat.flux, m_flat.i_auto).statistic) < 0.12
    # Uniform i counts put several times more stamps at bright fluxes than the survey's counts.
    bright = np.percentile(m_nat.flux, 90)
    assert (m_flat.flux > bright).mean() > 2.5 * (m_nat.flux > bright).mean()
    assert np.unique(m_flat.flux_ref_id).size > 600  # continuous fluxes, not a few catalogue rows
    with pytest.raises(LumosValueError, match="flux_population needs flux_source='band_distribution'"):
        TeahupooConfig(n_stamps=10, flux_source="catalog", flux_population=100)
    with pytest.raises(LumosValueError, match="flux_count_slope"):
        TeahupooConfig(n_stamps=10, flux_source="band_distribution", flux_population=100, flux_count_slope=-1.0)


def test_shape_population_gives_balanced_shapes(tmp_path, small_survey: SurveyManifest) -> None:
    from lumos_ops.sim.population import draw_galaxies

    catalog = pd.read_parquet(small_survey.catalog_path)
    config = TeahupooConfig(n_stamps=600, stamp_size=16, seed=6, flux_source="band_distribution", flux_population=3000,
                            shape_population=3000, shape_count_slope=0.0, population_i_range=(16.5, 23.0))
    generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "shapes")
    meta = pd.read_parquet(tmp_path / "shapes" / "meta.parquet")
    population = draw_galaxies(np.random.default_rng(np.random.SeedSequence([6, 14])), 3000,
                               i_range=(16.5, 23.0), count_slope=0.0)
    assert meta.ref_id.between(0, 2999).all()
    np.testing.assert_allclose(meta.i_auto, population.i_auto.to_numpy()[meta.ref_id])
    np.testing.assert_allclose(meta.r50, population.r50.to_numpy()[meta.ref_id])
    # Uniform in i: a quarter of the stamps brighter than i = 18.1, against ~1 % in the survey catalogue.
    assert 0.18 < (meta.i_auto < 18.125).mean() < 0.32
    assert meta.i_auto.min() < 17.0 < catalog.i_auto.min()
    with pytest.raises(LumosValueError, match="population_i_range"):
        TeahupooConfig(n_stamps=10, population_i_range=(23.0, 17.0))
    with pytest.raises(LumosValueError, match="shape_count_slope"):
        TeahupooConfig(n_stamps=10, shape_population=10, shape_count_slope=2.0)


def test_uniform_magnitudes_when_the_count_slope_is_zero() -> None:
    from lumos_ops.sim.population import draw_magnitudes

    mags = draw_magnitudes(np.random.default_rng(3), 40000, low=18.0, high=23.0, slope=0.0)
    counts, _ = np.histogram(mags, bins=5, range=(18.0, 23.0))
    assert mags.min() >= 18.0 and mags.max() < 23.0
    np.testing.assert_allclose(counts / counts.mean(), 1.0, atol=0.05)


def test_neighbour_catalog(tmp_path, small_survey: SurveyManifest) -> None:
    catalog = pd.read_parquet(small_survey.catalog_path)
    bright = catalog.nsmallest(3, "i_auto")
    config = TeahupooConfig(n_stamps=30, stamp_size=32, seed=1, neighbour_fraction=1.0, neighbour_distance=(0.0, 5.0))
    generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "nc", neighbour_catalog=bright)
    meta = pd.read_parquet(tmp_path / "nc" / "meta.parquet")
    assert set(meta.nbr_ref_id) <= set(bright.ref_id) and (meta.nbr_flux > 0).all()
    with pytest.raises(CatalogError, match="neighbour catalogue has no rows"):
        generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "x", neighbour_catalog=bright.iloc[:0])


def test_reference_prior_draws_and_likelihood_training(tmp_path, small_survey: SurveyManifest) -> None:
    from lumos_ops.flux_prior import ReferencePrior
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.train import TrainConfig, train

    catalog = pd.read_parquet(small_survey.catalog_path)
    prior = {"low": -20.0, "high": 300.0}
    config = TeahupooConfig(n_stamps=160, stamp_size=60, seed=6, flux_source="reference_prior", flux_prior=prior,
                            background_scale_range=(0.5, 2.0), split_fractions=(0.75, 0.25, 0.0))
    generate_training_set(config, small_survey.exposure_paths, catalog, tmp_path / "ref")
    ts = TrainingSet(tmp_path / "ref")
    assert ts.flux_prior == ReferencePrior(low=-20.0, high=300.0)
    meta = ts.meta
    assert (meta.flux < 0).any() and meta.flux.between(-20.0, 300.0).all()
    assert meta.background_scale.between(0.5, 2.0).all() and meta.background_scale.std() > 0.1
    # a negative flux is a deterministic deficit of the unit-flux model: no Poisson noise of its own
    neg = np.flatnonzero((meta.flux < -5).to_numpy() & (meta.nbr_ref_id < 0).to_numpy())
    assert neg.size
    i = int(neg[0])
    exposure = read_exposure(meta.source_exposure[i])
    background = cut_stamps(exposure.data, np.array([meta.ccd_x[i]]), np.array([meta.ccd_y[i]]), size=60).data[0]
    stamp, model = ts.images(np.array([i]))[0]
    expected = background * meta.background_scale[i] + meta.flux[i] * model
    np.testing.assert_allclose(stamp, expected, rtol=1e-4, atol=1e-4)
    metrics = train(tmp_path / "ref", tmp_path / "model", TrainConfig(epochs=1, batch_size=32, progress=False,
                                                                        ccd_shape=exposure.shape))
    loaded = load_checkpoint(tmp_path / "model" / "model.pt", device="cpu")
    assert loaded.is_likelihood and loaded.flux_prior == ReferencePrior(low=-20.0, high=300.0)
    assert loaded.metadata["truncation_imag"] is None
    assert np.isfinite(metrics["val_loss"])


def test_target_clearance_cuts_backgrounds_only_clear_of_the_exposures_sources(tmp_path, small_survey: SurveyManifest) -> None:
    from lumos_ops.noise_calibration import source_clearance

    catalog = pd.read_parquet(small_survey.catalog_path)
    anywhere = TeahupooConfig(n_stamps=300, stamp_size=40, seed=3)
    clear = TeahupooConfig(n_stamps=300, stamp_size=40, seed=3, target_clearance=6.0)
    half_clear = TeahupooConfig(n_stamps=300, stamp_size=40, seed=3, target_clearance=6.0, clearance_fraction=0.5)
    generate_training_set(anywhere, small_survey.exposure_paths, catalog, tmp_path / "anywhere")
    generate_training_set(clear, small_survey.exposure_paths, catalog, tmp_path / "clear")
    generate_training_set(half_clear, small_survey.exposure_paths, catalog, tmp_path / "half")
    distances = {}
    for name in ("anywhere", "clear", "half"):
        meta = pd.read_parquet(tmp_path / name / "meta.parquet")
        d = []
        for path, rows in meta.groupby("source_exposure"):
            exposure = read_exposure(path)
            dist = source_clearance(exposure.data, fwhm_px=exposure.psf_fwhm / exposure.pixel_scale)
            d.append(dist[rows.ccd_y.to_numpy(int), rows.ccd_x.to_numpy(int)])
            half = clear.stamp_size // 2
            assert rows.ccd_x.between(half, dist.shape[1] - half).all()
        distances[name] = np.concatenate(d)
    assert (distances["clear"] >= 6.0).all()
    near = (distances["anywhere"] < 6.0).mean()
    assert near > 0.05  # the rule changes where stamps are cut
    # Half the stamps clear, half anywhere: about half as many near a source as without the rule.
    assert abs((distances["half"] < 6.0).mean() - 0.5 * near) < 0.5 * near * 0.6
    assert (distances["half"] < 6.0).any()
    manifest = json.loads((tmp_path / "clear" / "manifest.json").read_text())
    assert manifest["config"]["target_clearance"] == 6.0
    assert "clearance_fraction" not in manifest["config"]  # sets made before the option keep their manifest
    assert json.loads((tmp_path / "half" / "manifest.json").read_text())["config"]["clearance_fraction"] == 0.5
    with pytest.raises(LumosValueError, match="clearance_fraction < 1 needs target_clearance"):
        TeahupooConfig(n_stamps=3, clearance_fraction=0.5)
    with pytest.raises(LumosValueError, match=r"clearance_fraction must be in \[0, 1\]"):
        TeahupooConfig(n_stamps=3, target_clearance=6.0, clearance_fraction=1.5)
    with pytest.raises(LumosValueError, match="target_clearance"):
        TeahupooConfig(n_stamps=3, target_clearance=0.0)
    with pytest.raises(LumosValueError, match="no stamp centre 5000 px"):
        generate_training_set(TeahupooConfig(n_stamps=3, stamp_size=40, target_clearance=5000.0),
                              small_survey.exposure_paths[:1], catalog, tmp_path / "none")
