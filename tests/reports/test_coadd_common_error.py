"""``reports/lumos/coadd_common_error.py``: the shared / per-placement split of injection pulls."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "reports" / "lumos" / "coadd_common_error.py"


def _module():
    spec = importlib.util.spec_from_file_location("coadd_common_error", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(tau: float, n_galaxies: int = 3000, placements: int = 6, seed: int = 0) -> pd.DataFrame:
    """Injection rows whose pulls are ``c_galaxy + e`` with sigma(c) = tau and sigma(e) = 1 (e-/s)."""
    rng = np.random.default_rng(seed)
    galaxy = np.repeat(np.arange(n_galaxies), placements)
    place = np.tile(np.arange(placements), n_galaxies)
    shared = rng.normal(0.0, tau, n_galaxies)[galaxy]
    err = rng.uniform(2.0, 4.0, galaxy.size)
    true_flux = np.full(galaxy.size, 300.0)
    rows = pd.DataFrame({"population": "sersic", "method": "lumos", "galaxy": galaxy, "place": place,
                         "flux": true_flux + err * (shared + rng.normal(0.0, 1.0, galaxy.size)), "flux_err": err,
                         "true_flux": true_flux, "true_snr": 30.0, "aperture_a": np.nan})
    aperture = rows.assign(method="aperture", aperture_a=rng.uniform(2.0, 8.0, n_galaxies)[galaxy])
    return pd.concat([rows, aperture], ignore_index=True)


@pytest.mark.parametrize("tau", [0.0, 0.5])
def test_recovers_the_shared_and_the_independent_error(tmp_path, tau):
    module = _module()
    path = tmp_path / "table.parquet"
    _table(tau).to_parquet(path)
    result = module.analyse(path, placements=5)
    lumos = result["populations"]["sersic"]["lumos"]
    row = next(r for r in lumos["by_true_snr"] if r["lo"] == 20.0)
    assert row["n_galaxies"] == 3000 and row["placements"] == 5
    assert row["s"] == pytest.approx(1.0, abs=0.05)
    assert row["tau"] == pytest.approx(tau, abs=0.08)
    expected = np.sqrt(5 * tau**2 + 1.0)
    assert row["coadd_pull_sigma68"] == pytest.approx(expected, rel=0.06)
    assert row["coadd_pull_model"] == pytest.approx(expected, rel=0.06)
    assert [r["n_galaxies"] for r in lumos["by_true_snr"] if r["lo"] != 20.0] == [0, 0, 0, 0]
    assert len(lumos["mean_pull_by_size_snr10"]) == 4
