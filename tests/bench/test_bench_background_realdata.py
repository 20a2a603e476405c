"""``benchmarks/bench_background_realdata.py --out``: the JSON holds every printed figure, consistent with the table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import lumos_ops

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_background_realdata.py"


def _module():
    """The script as a module (registered in ``sys.modules``: its dataclass needs it)."""
    name = "bench_background_realdata"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _frame(path: Path) -> None:
    """A 200 px frame: skewed (gamma) sky noise of unit scale and a few round sources."""
    rng = np.random.default_rng(1)
    image = rng.gamma(4.0, 0.5, (200, 200)) - 2.0
    yy, xx = np.mgrid[:200, :200]
    for x0, y0 in ((60.3, 70.6), (140.1, 130.4), (100.0, 40.0)):
        image += 40.0 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.0**2))
    fits.PrimaryHDU(image.astype(np.float32)).writeto(path)


def test_out_writes_every_printed_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    module = _module()
    _frame(tmp_path / "frame.fits")
    monkeypatch.setattr(module, "FRAMES", ("frame.fits",))
    out = tmp_path / "sub" / "figures.json"
    module.main(["--data-dir", str(tmp_path), "--n", "30", "--seed", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())

    assert report["command"].endswith(f"--n 30 --seed 2 --out {out}")
    assert report["code"]["version"] == lumos_ops.__version__
    assert report["parameters"] == {"data_dir": str(tmp_path), "n": 30, "seed": 2, "detect_sigma": 2.0, "grow": 5}
    (frame,) = report["frames"]
    assert frame["frame"] == "frame.fits" and frame["unit"] == "ADU" and len(frame["sha256"]) == 64
    s = frame["noise_s"]
    assert frame["mean_minus_median_s"] == pytest.approx(frame["mean_minus_median"] / s)
    assert frame["skew"] > 0.5  # the gamma sky (skewness 1) survives the source mask
    assert f"noise s = {s:.4g}, skew {frame['skew']:.2f}" in printed
    labels = [label for label, _, _ in module.CONFIGS + module.SKY_CONFIGS]
    random = frame["placements"]["random"]
    assert random["n_annuli"] == 30 and "random: 30 annuli" in printed
    assert list(random["estimators"]) == labels
    assert frame["placements"]["on sources"]["n_annuli"] >= 1
    for placement in frame["placements"].values():
        for label, e in placement["estimators"].items():
            assert e["bias_s"] == pytest.approx(e["bias"] / s) and e["bias_err_s"] == pytest.approx(e["bias_err"] / s)
            assert 0.0 < e["used"] <= 1.0 and 0.0 <= e["incomplete"] <= 1.0
            assert f"{label:<28} {e['bias']:>11.4g} {e['bias_err']:>9.2g} {e['bias_s']:>+8.4f}" in printed
    estimators = random["estimators"]
    assert estimators["median_clip 3 sigma (old)"]["sigma"] == 3.0 and estimators["masked_mean (cutout detection)"]["sigma"] == 6.0
    assert estimators["masked_mean (frame detection)"]["source_mask"] == "frame detection"
    assert estimators["sky only: median_clip (old)"]["pixels"] == "sky only"
    # on the skewed sky alone the median-centred 3 sigma clip reads low, the 6 sigma mean-centred clip does not
    assert estimators["sky only: median_clip (old)"]["bias_s"] < -0.03
    assert abs(estimators["sky only: clipped_mean 6 sig"]["bias_s"]) < 0.02


def test_out_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _module().main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "figures.txt")])


def test_json_safe_replaces_non_finite_floats() -> None:
    assert _module().json_safe({"a": [1.0, float("nan")], "b": (float("inf"), None, "x")}) == {"a": [1.0, None], "b": [None, None, "x"]}
