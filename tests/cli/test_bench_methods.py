"""``lumos bench methods`` end to end on a tiny simulated survey (a few hundred stamps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops.bench.methods import MethodsBenchConfig, run_methods_benchmark
from lumos_ops.bench.methods_table import format_table
from lumos_ops.cli import main


def test_bench_methods_writes_json_png_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        ["bench", "methods", "--out", str(out), "--n-stamps", "150", "--ccd-shape", "400", "400",
         "--bands", "NB685", "--n-epochs", "1", "--render-profiles", "0", "--seed", "3", "-q"]
    )
    assert code == 0
    report = json.loads((out / "methods.json").read_text())
    assert (out / "methods.png").stat().st_size > 1000
    assert report["simulation"]["n_stamps"] == 150
    for method in ("aperture", "modelfit", "optimal"):
        overall = report["metrics"]["overall"][method]
        assert overall["n"] + overall["n_missing"] == 150
        assert overall["sigma68"] > 0
        assert sum(b["n"] + b["n_missing"] for b in report["metrics"]["binned"][method]) <= 150
        assert report["timing"][method]["seconds"] > 0
    assert report["render"] is None
    # the background the three share is timed apart, not charged to whichever ran first
    assert report["timing"]["background"]["seconds"] > 0
    printed = capsys.readouterr().out
    assert "shared annulus background, timed apart" in printed
    assert printed.startswith("method") and "aperture" in printed and "i_auto bin" in printed
    assert format_table(report).splitlines()[0] == printed.splitlines()[0]
    # A second run measures the stamps it simulated, without simulating again.
    again = tmp_path / "again"
    assert main(["bench", "methods", "--out", str(again), "--stamps", str(out / "sim" / "stamps"),
                 "--methods", "optimal", "--render-profiles", "0", "-q"]) == 0
    assert list(json.loads((again / "methods.json").read_text())["metrics"]["overall"]) == ["optimal"]
    # Extra methods (LUMOS later) join the comparison through the Python API.
    def ten_percent_high(rows: pd.DataFrame, images: np.ndarray) -> pd.DataFrame:
        assert images.shape[1:] == (2, 96, 96)
        return pd.DataFrame({"flux": 1.1 * rows["flux"].to_numpy(), "flux_err": np.ones(len(rows)), "flag": 0})

    report = run_methods_benchmark(
        MethodsBenchConfig(methods=("aperture",), render_profiles=0), tmp_path / "extra",
        stamps=out / "sim" / "stamps", extra={"fake": ten_percent_high},
    )
    fake = report["metrics"]["overall"]["fake"]
    assert fake["bias"] == pytest.approx(0.1) and fake["sigma68"] == pytest.approx(0.0, abs=1e-12)
    assert "fake" in format_table(report)
