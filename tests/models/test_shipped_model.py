"""The shipped default model: present, verifiable, small, and usable through LumosMethod()."""

import numpy as np

from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import MODELS_DIR, SHIPPED_MODELS, load_checkpoint
from lumos_ops.lumos.method import LumosMethod
from lumos_ops.measure import prepare_targets

from lumos_helpers import write_exposure


def test_shipped_model_loads_and_is_small():
    path = MODELS_DIR / SHIPPED_MODELS["default"]
    assert path.stat().st_size <= 25 * 1024**2
    loaded = load_checkpoint(None, device="cpu")  # verifies the SHA-256
    assert loaded.arch == "fast-mf" and loaded.net.anchored
    assert loaded.metadata["n_train"] >= 10_000
    assert loaded.normalization.ccd_shape == (2048, 2048)
    assert (MODELS_DIR / "MODEL_CARD.md").is_file()


def test_default_method_measures_an_exposure(tmp_path):
    path, catalog = write_exposure(tmp_path / "e.fits", seed=5)
    ctx = prepare_targets(read_exposure(path), catalog)
    frame = LumosMethod().measure(ctx)
    assert len(frame) == len(catalog)
    assert np.isfinite(frame["flux"]).all() and (frame["flux_err"] > 0).all()
    assert frame["likelihood"].all()
    np.testing.assert_array_equal(frame["flux"], frame["median"])


def test_shipped_models_are_likelihood_networks():
    for name in SHIPPED_MODELS:
        loaded = load_checkpoint(name, device="cpu")  # verifies the SHA-256
        assert loaded.is_likelihood, name
        assert loaded.flux_prior.low < 0 < loaded.flux_prior.high
    noccd = load_checkpoint("fast-noccd", device="cpu")
    assert not {"ccd_x", "ccd_y"} & set(noccd.net.config.inputs)


def test_the_weights_table_matches_every_shipped_file():
    import hashlib

    from lumos_ops.lumos.recipe import RECIPES
    from lumos_ops.lumos.weights import SHIPPED_WEIGHTS

    assert sorted(p.name for p in MODELS_DIR.glob("*.pt")) == sorted(w.file for w in SHIPPED_WEIGHTS)
    assert [w.status for w in SHIPPED_WEIGHTS].count("default") == 1
    for weights in SHIPPED_WEIGHTS:
        path = MODELS_DIR / weights.file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == weights.sha256, weights.name
        loaded = load_checkpoint(weights.name)
        assert loaded.arch == weights.arch and weights.recipe in RECIPES
        assert loaded.metadata["recipe"]["name"] == weights.recipe
        assert SHIPPED_MODELS[weights.name] == weights.file


def test_no_shipped_model_reads_the_frame_sky_level():
    """The stamp background is the sky level, which real frames set by how they were reduced
    (sky-subtracted: about 0; raw: whatever the gain gives), not by their noise (reports/lumos/sky-level)."""
    for name in SHIPPED_MODELS:
        assert "background" not in load_checkpoint(name, device="cpu").net.config.inputs, name


def test_the_default_knows_every_paus_narrow_band_and_epoch():
    from lumos_ops.constants import N_EPOCHS, NB_BANDS

    loaded = load_checkpoint(None, device="cpu")
    rows = {loaded.band_epoch_row(band, epoch) for band in NB_BANDS for epoch in range(N_EPOCHS)}
    assert None not in rows and len(rows) == len(NB_BANDS) * N_EPOCHS
    assert loaded.trained_band_epochs == frozenset(rows)
