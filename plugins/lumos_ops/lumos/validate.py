"""``lumos validate``: the evidence report of a LUMOS model on held-out simulations.

* bias and sigma68 of ``(f - f0) / f0`` per i_auto bin for LUMOS (mean, median and peak of the
  PDF) and the classical baselines measured on the same stamps (``lumos_ops.bench.metrics``,
  the paper's Fig. 7), when the test stamps are large enough for the baselines' annulus (>= 93 px;
  LUMOS uses the central 60 x 60 pixels);
* PIT histogram (eq. 13, Fig. 6) and the coverage of the 68 % central interval and of mean +- std;
* deblending: the same metrics for stamps with and without a neighbour galaxy (TEAHUPOO
  ``nbr_ref_id >= 0``, §5.3);
* optionally the width sigma68 of the D statistic (eq. 19) of repeated observations of the same
  galaxy in survey exposures, in equally populated i_auto bins (Fig. 12).

Writes ``OUT/validation.json``, ``OUT/validation.png`` (PIT, coverage, D width) and
``OUT/validation_methods.png`` (bias / sigma68 vs i_auto).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError

__all__ = ["ValidateConfig", "validate", "lumos_on_training_set", "d_width_by_magnitude"]

_BASELINE_MIN_SIZE = 93


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """Options of :func:`validate`.

    Attributes
    ----------
    baselines : tuple of str
        Keys of ``lumos_ops.bench.methods.STAMP_METHODS`` to compare with.
    split : str
        Split of the test set (``"all"`` for every stamp).
    max_stamps : int or None
        Use the first N stamps of the split.
    batch_size : int
    device : str or None
    progress : bool
    """

    baselines: tuple[str, ...] = ("aperture", "optimal")
    split: str = "test"
    max_stamps: int | None = None
    batch_size: int = 1024
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test", "all"):
            raise LumosValueError(f"split must be train, val, test or all, got {self.split!r}")
        if self.batch_size < 1 or (self.max_stamps is not None and self.max_stamps < 1):
            raise LumosValueError("batch_size and max_stamps must be >= 1")


def lumos_on_training_set(loaded, ts, ids: np.ndarray, *, batch_size: int = 1024) -> pd.DataFrame:
    """LUMOS result columns (see ``inference.mixture_table``) for stamps ``ids`` of a TEAHUPOO set.

    Stamps larger than the model's input are cropped to their central ``stamp_size`` pixels.
    """
    from lumos_ops.lumos.inference import mixture_table, predict_mixtures
    from lumos_ops.lumos.preprocess import prepare_inputs

    size = loaded.net.config.stamp_size
    if ts.stamp_size < size:
        raise LumosValueError(f"{ts.path}: stamps are {ts.stamp_size} px, the model needs >= {size} px")
    off = ts.stamp_size // 2 - size // 2
    meta = ts.meta.iloc[ids]
    parts = []
    for lo in range(0, ids.size, 8192):
        chunk = ids[lo : lo + 8192]
        rows = meta.iloc[lo : lo + chunk.size]
        images = ts.images(chunk)[:, :, off : off + size, off : off + size]
        i_auto = rows["i_auto"].to_numpy(np.float64)
        inputs = prepare_inputs(images[:, 0], images[:, 1], i_auto, rows["ccd_x"].to_numpy(), rows["ccd_y"].to_numpy(),
                                rows["band_epoch"].to_numpy(np.int64), loaded.normalization)
        mixtures = predict_mixtures(loaded, inputs, i_auto, batch_size=batch_size)
        parts.append(pd.DataFrame(mixture_table(mixtures)))
    return pd.concat(parts, ignore_index=True)


def d_width_by_magnitude(d: np.ndarray, mag: np.ndarray, *, n_bins: int = 5) -> list[dict[str, float]]:
    """sigma68 of D (eq. 19) in equally populated magnitude bins."""
    ok = np.isfinite(d) & np.isfinite(mag)
    d, mag = d[ok], mag[ok]
    if d.size < n_bins * 5:
        n_bins = max(1, d.size // 5)
    if d.size == 0:
        return []
    edges = np.quantile(mag, np.linspace(0, 1, n_bins + 1))
    out = []
    for k in range(n_bins):
        sel = (mag >= edges[k]) & ((mag < edges[k + 1]) if k < n_bins - 1 else (mag <= edges[k + 1]))
        if sel.sum() < 3:
            continue
        q16, q84 = np.percentile(d[sel], [16, 84])
        out.append({"mag_lo": float(edges[k]), "mag_hi": float(edges[k + 1]), "n": int(sel.sum()), "sigma68_D": float(0.5 * (q84 - q16))})
    return out


def _pair_d(loaded, exposures: Sequence[str], catalog: pd.DataFrame, batch_size: int) -> dict[str, Any]:
    from lumos_ops.lumos.coadd import njy_factor
    from lumos_ops.lumos.inference import mixture_table, predict_mixtures
    from lumos_ops.lumos.mixture import d_statistic
    from lumos_ops.lumos.pairs import collect_observations, make_pairs

    obs = collect_observations(exposures, catalog, loaded.normalization, stamp_size=loaded.net.config.stamp_size,
                               default_zero_point=None)
    i_auto = obs.table["i_auto"].to_numpy(np.float64)
    cols = mixture_table(predict_mixtures(loaded, obs.inputs, i_auto, batch_size=batch_size))
    c = njy_factor(obs.table["zero_point"].to_numpy())
    pairs = make_pairs(obs.table)
    f, s = cols["flux"] * c, cols["flux_err"] * c
    d = d_statistic(f[pairs[:, 0]], s[pairs[:, 0]], f[pairs[:, 1]], s[pairs[:, 1]])
    ok = np.isfinite(d)
    q16, q84 = np.percentile(d[ok], [16, 84]) if ok.any() else (np.nan, np.nan)
    return {
        "n_pairs": int(pairs.shape[0]),
        "sigma68_D": float(0.5 * (q84 - q16)),
        "by_imag": d_width_by_magnitude(d, i_auto[pairs[:, 0]]),
        "_d": d,
    }


def _coverage(frame: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    from lumos_ops.lumos.mixture import mixture_quantile

    k = sum(1 for c in frame.columns if c.startswith("alpha_"))
    alpha = frame[[f"alpha_{i}" for i in range(k)]].to_numpy()
    mu = frame[[f"mu_{i}" for i in range(k)]].to_numpy()
    sigma = frame[[f"sigma_{i}" for i in range(k)]].to_numpy()
    q = mixture_quantile([0.16, 0.84], alpha, mu, sigma, frame["truncated"].to_numpy(bool))
    inside = (truth >= q[:, 0]) & (truth <= q[:, 1])
    within_std = np.abs(frame["flux"].to_numpy() - truth) <= frame["flux_err"].to_numpy()
    return {"coverage68_interval": float(inside.mean()), "coverage_mean_pm_std": float(within_std.mean())}


def validate(
    model: str | os.PathLike[str] | None,
    test_set: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ValidateConfig,
    *,
    pairs_from: tuple[Sequence[str], str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Write the validation report of ``model`` on ``test_set``; returns it.

    Parameters
    ----------
    model : path-like, shipped-model name or None
    test_set : path-like
        TEAHUPOO directory.
    out_dir : path-like
    config : ValidateConfig
    pairs_from : (exposure paths, catalogue path), keyword-only
        Survey exposures for the D-statistic test.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lumos_ops.bench.metrics import compare_methods, comparison_to_dict, plot_comparison
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.mixture import pit
    from lumos_ops.sim import TrainingSet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(model, device=config.device)
    ts = TrainingSet(test_set)
    ids = np.arange(len(ts)) if config.split == "all" else ts.indices(config.split)
    ids = ids[: config.max_stamps]
    if ids.size == 0:
        raise LumosValueError(f"{test_set}: no stamps in split {config.split!r}")
    meta = ts.meta.iloc[ids].reset_index(drop=True)
    truth = meta["flux"].to_numpy(np.float64)
    mag = meta["i_auto"].to_numpy(np.float64)
    lumos = lumos_on_training_set(loaded, ts, ids, batch_size=config.batch_size)
    fluxes: dict[str, np.ndarray] = {"lumos": lumos["flux"].to_numpy(), "lumos_median": lumos["median"].to_numpy(),
                                     "lumos_peak": lumos["mode"].to_numpy()}
    baselines_done: list[str] = []
    if config.baselines and ts.stamp_size >= _BASELINE_MIN_SIZE:
        from lumos_ops.bench.methods import measure_stamp_set

        split = None if config.split == "all" else config.split
        base_meta, results, _ = measure_stamp_set(test_set, methods=config.baselines, split=split, progress=config.progress)
        for name, frame in results.items():
            fluxes[name] = frame["flux"].to_numpy(np.float64)[: ids.size]
            baselines_done.append(name)
    metrics = compare_methods(fluxes, truth, mag, n_boot=50)
    plot_comparison(metrics, out / "validation_methods.png", title=f"LUMOS ({loaded.arch}) vs baselines, {ids.size} stamps")

    pits = pit(truth, lumos[[c for c in lumos.columns if c.startswith("alpha_")]].to_numpy(),
               lumos[[c for c in lumos.columns if c.startswith("mu_")]].to_numpy(),
               lumos[[c for c in lumos.columns if c.startswith("sigma_")]].to_numpy(), lumos["truncated"].to_numpy(bool))
    pit_hist = np.histogram(pits, bins=20, range=(0, 1))[0]
    coverage = _coverage(lumos, truth)

    deblend: dict[str, Any] = {}
    if "nbr_ref_id" in meta.columns and (meta["nbr_ref_id"] >= 0).any():
        has = (meta["nbr_ref_id"] >= 0).to_numpy()
        for label, sel in (("with_neighbour", has), ("isolated", ~has)):
            sub = compare_methods({k: v[sel] for k, v in fluxes.items()}, truth[sel], mag[sel], n_boot=0)
            deblend[label] = comparison_to_dict(sub)["overall"]

    pairs: dict[str, Any] | None = None
    if pairs_from is not None:
        from lumos_ops.io.catalog import read_catalog

        pairs = _pair_d(loaded, list(pairs_from[0]), read_catalog(pairs_from[1]), config.batch_size)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    centres = (np.arange(20) + 0.5) / 20
    axes[0].step(centres, pit_hist / max(pit_hist.mean(), 1e-12), where="mid")
    axes[0].axhline(1.0, color="grey", ls=":")
    axes[0].set(xlabel="PIT (eq. 13)", ylabel="density / uniform", title=f"PIT, {ids.size} stamps")
    bins = np.array([17.5, 20.0, 21.0, 21.5, 22.0, 22.5, 23.0])
    cov = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (mag >= lo) & (mag < hi)
        cov.append(float(np.mean((pits[sel] > 0.16) & (pits[sel] < 0.84))) if sel.sum() else np.nan)
    axes[1].plot(0.5 * (bins[:-1] + bins[1:]), cov, "o-")
    axes[1].axhline(0.68, color="grey", ls=":")
    axes[1].set(xlabel="i_auto", ylabel="fraction in 16-84 % interval", title="68 % coverage", ylim=(0, 1))
    if pairs is not None and pairs["by_imag"]:
        x = [0.5 * (b["mag_lo"] + b["mag_hi"]) for b in pairs["by_imag"]]
        axes[2].plot(x, [b["sigma68_D"] for b in pairs["by_imag"]], "o-")
        axes[2].axhline(1.0, color="grey", ls=":")
        axes[2].set(xlabel="i_auto", ylabel="sigma68[D] (eq. 19)", title=f"D width, {pairs['n_pairs']} pairs")
    else:
        axes[2].text(0.5, 0.5, "no survey pairs given", ha="center", va="center")
        axes[2].set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "validation.png", dpi=110)
    plt.close(fig)

    overall = comparison_to_dict(metrics)["overall"]
    summary = {
        "n_stamps": int(ids.size),
        "model": loaded.path,
        "model_sha256": loaded.sha256,
        "overall": overall,
        **coverage,
        "pit_chi2_per_bin": float(((pit_hist - pit_hist.mean()) ** 2 / max(pit_hist.mean(), 1e-12)).sum() / pit_hist.size),
        "sigma68_D": None if pairs is None else pairs["sigma68_D"],
    }
    report = {
        "summary": summary,
        "methods": comparison_to_dict(metrics),
        "baselines": baselines_done,
        "missing_baselines": [b for b in config.baselines if b not in baselines_done],
        "pit_hist": pit_hist.tolist(),
        "coverage_by_imag": {"edges": bins.tolist(), "coverage68": cov},
        "deblending": deblend,
        "pairs": None if pairs is None else {k: v for k, v in pairs.items() if not k.startswith("_")},
        "test_set": str(Path(test_set).resolve()),
        "split": config.split,
    }
    (out / "validation.json").write_text(json.dumps(report, indent=2, default=lambda o: None))
    return report
