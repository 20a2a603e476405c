"""``reports/lumos/scattered-light/score.py``: LUMOS against the optimal sum, split by each placement's scattered light."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "reports" / "lumos" / "scattered-light" / "score.py"


def _module():
    spec = importlib.util.spec_from_file_location("scattered_light_score", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(seed: int = 0) -> pd.DataFrame:
    """Two frames of 6,000 placements (1,200 galaxies each); a third of each frame's placements sit under 30 %
    more sky (its annulus background), where the optimal sum scatters twice as much as LUMOS and
    elsewhere as much."""
    rng = np.random.default_rng(seed)
    rows = []
    for frame, sky in (("a.fits", 5.0), ("b.fits", 8.0)):
        n = 6000
        placement = np.arange(n) + (0 if frame == "a.fits" else n)
        galaxy = placement // 5
        lit = rng.random(n) < 1 / 3
        background = sky * np.where(lit, 1.3, 1.0) * rng.uniform(0.99, 1.01, n)
        true_flux = rng.uniform(50.0, 500.0, n)
        err = 10.0 * np.ones(n)
        common = {"population": "sersic", "frame": frame, "placement": placement, "galaxy": galaxy,
                  "true_flux": true_flux, "true_snr": true_flux / err}
        scatter = {"lumos": np.ones(n), "optimal": np.where(lit, 2.0, 1.0), "aperture": np.ones(n)}
        for method, scale in scatter.items():
            rows.append(pd.DataFrame({**common, "method": method, "flux": true_flux + err * scale * rng.normal(size=n),
                                      "flux_err": err * scale, "background": background}))
    return pd.concat(rows, ignore_index=True)


def test_the_lit_placements_are_scored_apart(tmp_path):
    module = _module()
    table = _table()
    light = module.scattered_fraction(table)
    aperture = table[table["method"] == "aperture"].set_index("placement")
    lit = aperture["background"] > aperture["frame"].map({"a.fits": 5.0, "b.fits": 8.0}) * 1.15
    assert (light[lit.index[~lit]] < 0.05).all() and (light[lit.index[lit]] >= 0.15).all()
    report = tmp_path / "report"
    report.mkdir()
    table.to_parquet(report / "injection_table.parquet")
    result = module.score(str(report))["sersic"]
    assert set(result) == {"quiet (< 5 %)", "scattered light (>= 15 %)"}
    assert result["quiet (< 5 %)"]["worst_ratio"] == pytest.approx(1.0, abs=0.15)
    assert result["scattered light (>= 15 %)"]["worst_ratio"] == pytest.approx(0.5, abs=0.1)
    assert result["scattered light (>= 15 %)"]["n_placements"] == pytest.approx(12000 / 3, rel=0.1)
