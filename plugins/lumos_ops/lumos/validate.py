"""``lumos validate``: the evidence report of a LUMOS model on held-out simulations (issue §4).

* bias and sigma68 of ``(f - f0) / f0`` per magnitude bin for LUMOS (mean, median and peak of the
  PDF), the classical baselines measured on the same stamps (``lumos_ops.bench.metrics``, the
  paper's Fig. 7; stamps >= 93 px so the baselines have their annulus, LUMOS uses the central
  60 x 60 pixels), the pixel-free prior (:mod:`lumos_ops.lumos.prior`) and the information reference
  ``bayes_optimal`` (:mod:`lumos_ops.lumos.bayes_reference`: optimal weights times the true flux
  prior, the sigma68 that the stamps' information allows a calibrated posterior median);
* PIT histogram (eq. 13, Fig. 6) and its Kolmogorov-Smirnov distance from uniform, optionally also
  for a model trained without the CCD position; coverage of the 68 % interval and of mean +- std;
* SNR per band of LUMOS and of aperture photometry;
* deblending (Figs. 8-9): an i = 22 target with an i = 20 neighbour at 0-20 px, bias vs distance
  (:mod:`lumos_ops.lumos.deblend`), and, when the test set has neighbours, with vs without;
* the width sigma68 of the D statistic (eq. 19) of repeated observations of the same galaxy in the
  survey exposures, in equally populated i_auto bins (Fig. 12);
* the acceptance targets table (:mod:`lumos_ops.lumos.targets`).

Which fluxes the test stamps carry is stated in the report (``test_set_fluxes``). The bins of the
targets are in i_auto, as in the paper's Fig. 7. The report also bins the same
stamps in the AB magnitude of the true band flux (``methods_by_band_mag``): with the paper's
independent per-band draws the flux does not depend on i_auto, and binning by the truth shows how
far a posterior estimate is pulled towards the training flux distribution at low SNR, which
i_auto bins average out.

Writes ``OUT/validation.json``, ``OUT/validation.png`` (PIT, coverage, D width, deblending, SNR)
and ``OUT/validation_methods.png`` (bias / sigma68 per magnitude bin).
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

__all__ = ["ValidateConfig", "validate", "lumos_on_training_set", "d_width_by_magnitude", "MIN_STAMPS", "ESTIMATORS"]

_BASELINE_MIN_SIZE = 93
MIN_STAMPS = 10_000
"""Smallest number of evaluation stamps accepted as evidence."""
_BINNINGS = ("i_auto", "band_mag")
ESTIMATORS = {"median": "median", "mean": "mean", "mode": "mode"}
"""Point estimates of the PDF that ``lumos validate`` can score, and their column in the LUMOS table."""
_DEBLEND_FLUXES = ("test_set", "catalog")
_DEBLEND_MEANING = {
    "test_set": "target band fluxes drawn as the test set's (a TEAHUPOO target when the test set draws them "
                "independently of the galaxy, as in the paper)",
    "catalog": "each target's own catalogue SED at i = 22",
}


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """Options of :func:`validate`.

    Attributes
    ----------
    baselines : tuple of str
        Keys of ``lumos_ops.bench.methods.STAMP_METHODS`` to compare with.
    split : str
        Split of the test set (``"all"``, the default, for every stamp: a held-out set).
    max_stamps : int or None
        Use the first N stamps of the split.
    min_stamps : int
        Refuse fewer stamps than this (default :data:`MIN_STAMPS`).
    binning : str
        Magnitude of the bins of the targets: ``"i_auto"`` (default, as in the paper's Fig. 7) or
        ``"band_mag"`` (AB magnitude of the true band flux); the report also holds the other.
    estimator : str
        Point estimate of the PDF scored as ``"lumos"`` in the targets and the deblending test:
        ``"median"`` (default; the bias of eq. 17 is a median, and the PDF median is the estimate
        whose relative error has zero median in any bin of observed quantities, such as i_auto,
        when the PDFs are calibrated), ``"mean"`` (eq. 15) or ``"mode"`` (the peak, the paper's
        choice for photo-z). The report holds all three as ``lumos_mean``, ``lumos_median`` and
        ``lumos_peak``.
    no_ccd_model : str or None
        A checkpoint trained without the CCD position (``--drop-input ccd_x ccd_y``) whose PIT
        is compared with the main model's (Fig. 6).
    deblend_stamps : int
        Stamps of the Fig. 8-9 deblending test (needs the survey exposures); 0 = skip.
    deblend_fluxes : tuple of str
        Band fluxes of the deblending targets, one test per entry; the first is scored by the
        targets table (``report["deblending"]``), the others go to ``report["deblending_other"]``.
        ``"test_set"``: drawn as the test set's fluxes (its ``TeahupooConfig`` flux fields; with
        ``band_distribution`` a TEAHUPOO target as in the paper, shape at i = 22 and a band flux
        independent of the galaxy, so that the isolated control is unbiased for a calibrated PDF;
        a test set that draws from the catalogue rows, ``flux_population=0``, gives draws from the
        catalogue rescaled to i = 22 instead);
        ``"catalog"``: each target's own catalogue SED at i = 22 (the isolated control then also
        measures how far the training flux prior sits from the fluxes of i = 22 galaxies).
    seed : int
        Seed of the deblending stamps.
    batch_size : int
    device : str or None
    progress : bool
    """

    baselines: tuple[str, ...] = ("aperture", "optimal")
    split: str = "all"
    max_stamps: int | None = None
    min_stamps: int = MIN_STAMPS
    binning: str = "i_auto"
    estimator: str = "median"
    no_ccd_model: str | None = None
    deblend_stamps: int = 4000
    deblend_fluxes: tuple[str, ...] = ("test_set", "catalog")
    seed: int = 5
    batch_size: int = 1024
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test", "all"):
            raise LumosValueError(f"split must be train, val, test or all, got {self.split!r}")
        if self.batch_size < 1 or (self.max_stamps is not None and self.max_stamps < 1):
            raise LumosValueError("batch_size and max_stamps must be >= 1")
        if self.min_stamps < 0 or self.deblend_stamps < 0:
            raise LumosValueError("min_stamps and deblend_stamps must be >= 0")
        if self.binning not in _BINNINGS:
            raise LumosValueError(f"binning must be one of {_BINNINGS}, got {self.binning!r}")
        if not self.deblend_fluxes or any(f not in _DEBLEND_FLUXES for f in self.deblend_fluxes):
            raise LumosValueError(f"deblend_fluxes must be one or more of {_DEBLEND_FLUXES}, got {self.deblend_fluxes!r}")
        if self.estimator not in ESTIMATORS:
            raise LumosValueError(f"estimator must be one of {tuple(ESTIMATORS)}, got {self.estimator!r}")


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
        parts.append(pd.DataFrame(mixture_table(mixtures, likelihood=loaded.is_likelihood)))
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
    cols = mixture_table(predict_mixtures(loaded, obs.inputs, i_auto, batch_size=batch_size), likelihood=loaded.is_likelihood)
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


def _mixture_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    k = sum(1 for c in frame.columns if c.startswith("alpha_"))
    return (frame[[f"alpha_{i}" for i in range(k)]].to_numpy(), frame[[f"mu_{i}" for i in range(k)]].to_numpy(),
            frame[[f"sigma_{i}" for i in range(k)]].to_numpy(), frame["truncated"].to_numpy(bool))


def _coverage(frame: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    from lumos_ops.lumos.mixture import mixture_quantile

    alpha, mu, sigma, truncated = _mixture_arrays(frame)
    q = mixture_quantile([0.16, 0.84], alpha, mu, sigma, truncated)
    inside = (truth >= q[:, 0]) & (truth <= q[:, 1])
    within_std = np.abs(frame["flux"].to_numpy() - truth) <= frame["flux_err"].to_numpy()
    return {"coverage68_interval": float(inside.mean()), "coverage_mean_pm_std": float(within_std.mean())}


def _pit_summary(frame: pd.DataFrame, truth: np.ndarray) -> dict[str, Any]:
    """PIT values (eq. 13), their 20-bin histogram and KS distance from U(0, 1)."""
    from scipy.stats import kstest

    from lumos_ops.lumos.mixture import pit

    values = pit(truth, *_mixture_arrays(frame))
    finite = values[np.isfinite(values)]
    hist = np.histogram(finite, bins=20, range=(0, 1))[0]
    return {
        "_values": values,
        "hist": hist.tolist(),
        "ks_distance": float(kstest(finite, "uniform").statistic) if finite.size else float("nan"),
        "chi2_per_bin": float(((hist - hist.mean()) ** 2 / max(hist.mean(), 1e-12)).sum() / hist.size),
    }


def _stamp_crb(ts, ids: np.ndarray, truth: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Cramer-Rao flux error (e-/s) of each stamp: its unit-flux model channel, the stamp's robust
    pixel noise (1.4826 MAD, e-/s) and the source's Poisson variance over the stamp's exposure time."""
    from lumos_ops.evaluation.fixed_truth import crb_flux_error

    exptime = ts.meta["exptime"].to_numpy(np.float64)[ids]
    out = np.empty(ids.size)
    for lo in range(0, ids.size, chunk):
        sel = slice(lo, lo + chunk)
        images = ts.images(ids[sel]).astype(np.float64)
        cut, model = images[:, 0], images[:, 1]
        flat = cut.reshape(cut.shape[0], -1)
        med = np.nanmedian(flat, axis=1, keepdims=True)
        var = (1.4826 * np.nanmedian(np.abs(flat - med), axis=1)) ** 2
        source = np.clip(truth[sel, None, None] * model, 0.0, None) / exptime[sel, None, None]
        out[sel] = crb_flux_error(model, var[:, None, None] + source)
    return out


def _fixed_truth(meta: pd.DataFrame, truth: np.ndarray, crb: np.ndarray, errors: dict[str, tuple[np.ndarray, np.ndarray]],
                 lumos: pd.DataFrame, likelihood: bool) -> dict[str, Any]:
    """Bias, sigma68, pulls and coverage per bin of true flux and true SNR for every method; the
    LUMOS PIT with the test set's own (cross-fitted) flux population as prior."""
    from lumos_ops.evaluation.fixed_truth import TRUE_FLUX_EDGES, TRUE_SNR_EDGES, fixed_truth_bins
    from lumos_ops.evaluation.population_prior import posterior_pit
    from lumos_ops.lumos.mixture import mixture_quantile

    alpha, mu, sigma, truncated = _mixture_arrays(lumos)
    q = mixture_quantile([0.16, 0.84], alpha, mu, sigma, truncated)
    snr = truth / crb
    out: dict[str, Any] = {"true_snr": "f0 / Cramer-Rao error of the stamp's unit-flux model and robust pixel noise",
                           "methods": {}}
    for name, (flux, err) in errors.items():
        lower, upper = (q[:, 0], q[:, 1]) if name == "lumos" else (None, None)
        out["methods"][name] = {
            "by_true_flux": fixed_truth_bins(truth, flux, err, edges=TRUE_FLUX_EDGES, lower=lower, upper=upper, n_boot=100),
            "by_true_snr": fixed_truth_bins(truth, flux, err, by=snr, edges=TRUE_SNR_EDGES, lower=lower, upper=upper,
                                            n_boot=100),
        }
    if likelihood:
        values = np.sort(posterior_pit(truth, alpha, mu, sigma, truncated=truncated))
        values = values[np.isfinite(values)]
        out["pit_population_prior"] = {
            "ks_distance": float(np.max(np.abs(np.arange(1, values.size + 1) / values.size - values))),
            "hist": np.histogram(values, bins=10, range=(0, 1))[0].tolist(),
        }
    return out


def _set_config(ts) -> dict[str, Any]:
    return (ts.manifest.get("config") or {}) if isinstance(getattr(ts, "manifest", None), dict) else {}


def _set_fluxes(ts) -> str:
    return str(_set_config(ts).get("flux_source", "unknown"))


def _band_mag(meta: pd.DataFrame) -> np.ndarray:
    from lumos_ops.sim.bands import band_zero_point

    zp = meta["zero_point"].to_numpy(np.float64) if "zero_point" in meta.columns else np.full(len(meta), np.nan)
    missing = ~np.isfinite(zp)
    if missing.any():
        zp = zp.copy()
        zp[missing] = [band_zero_point(b) for b in meta["band"].to_numpy()[missing]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return zp - 2.5 * np.log10(meta["flux"].to_numpy(np.float64))


def _snr_by_band(meta: pd.DataFrame, truth: np.ndarray, results: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per band and method: median reported SNR (f / sigma_f) and empirical SNR (median f0 / sigma68(f - f0))."""
    out: dict[str, Any] = {}
    bands = meta["band"].to_numpy().astype(str)
    for band in sorted(set(bands)):
        sel = bands == band
        row: dict[str, Any] = {"n": int(sel.sum())}
        for name, (flux, err) in results.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                reported = flux[sel] / err[sel]
            resid = (flux - truth)[sel]
            resid = resid[np.isfinite(resid)]
            spread = 0.5 * float(np.subtract(*np.percentile(resid, [84, 16]))) if resid.size else float("nan")
            row[name] = {"snr_reported_median": float(np.nanmedian(reported)) if np.isfinite(reported).any() else None,
                         "snr_empirical": float(np.median(truth[sel]) / spread) if spread > 0 else None}
        out[band] = row
    return out


def _deblend(loaded, ts, pairs_from, config: ValidateConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The deblending test once per ``config.deblend_fluxes`` entry: (scored one, {name: others})."""
    import tempfile

    from lumos_ops.lumos.deblend import TARGET_FLUX_FIELDS

    set_config = _set_config(ts)
    drawn = set_config.get("flux_source") == "band_distribution"
    choices = {"catalog": None,
               "test_set": {k: (tuple(v) if isinstance(v, list) else v) for k, v in set_config.items()
                            if k in TARGET_FLUX_FIELDS} if drawn else None}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lumos-deblend-") as tmp:
        for name in config.deblend_fluxes:
            same = [k for k in results if choices[k] == choices[name]]
            results[name] = {**results[same[0]], "target_fluxes": name} if same else _deblend_in(
                loaded, pairs_from, Path(tmp) / f"stamps-{name}", config, name, choices[name])
    first, *rest = config.deblend_fluxes
    return results[first], {name: results[name] for name in rest}


def _deblend_in(loaded, pairs_from, path: Path, config: ValidateConfig, name: str,
                target_flux: dict[str, Any] | None) -> dict[str, Any]:
    from lumos_ops.bench.methods import measure_stamp_set
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.deblend import bias_by_distance, excess_by_distance, make_deblend_set
    from lumos_ops.sim import TrainingSet
    from lumos_ops.stats import bias, relative_error, sigma68

    catalog = read_catalog(pairs_from[1])
    column = ESTIMATORS[config.estimator]
    baselines = [b for b in ("aperture", "optimal") if b in config.baselines] or ["aperture"]
    measured: dict[str, dict[str, np.ndarray]] = {}
    for label, neighbours in (("with", True), ("isolated", False)):
        where = path.with_name(f"{path.name}-{label}")
        make_deblend_set(list(pairs_from[0]), catalog, where, n_stamps=config.deblend_stamps, seed=config.seed,
                         neighbours=neighbours, target_flux=target_flux)
        ts = TrainingSet(where)
        fluxes = {"lumos": lumos_on_training_set(loaded, ts, np.arange(len(ts)), batch_size=config.batch_size)[column]
                  .to_numpy()}
        _, results, _ = measure_stamp_set(where, methods=baselines, progress=config.progress)
        for method, frame in results.items():
            fluxes[method] = frame["flux"].to_numpy(np.float64)
        measured[label] = fluxes
        if neighbours:
            meta = ts.meta
    truth = meta["flux"].to_numpy(np.float64)
    distance = np.hypot(meta["nbr_dx"].to_numpy(), meta["nbr_dy"].to_numpy())
    isolated = {}
    for method, flux in measured["isolated"].items():
        rel = relative_error(flux, truth)
        isolated[method] = {"n": int(np.isfinite(rel).sum()), "bias": bias(rel), "sigma68": sigma68(rel)}
    return {
        "n_stamps": int(len(truth)),
        "target_i_auto": 22.0,
        "neighbour_i_auto": 20.0,
        "distance_px": [0.0, 20.0],
        "target_fluxes": name,
        "target_fluxes_meaning": _DEBLEND_MEANING[name],
        "target_flux_quantiles_e_per_s": dict(zip(("p5", "p50", "p95"), np.percentile(truth, [5, 50, 95]).tolist())),
        "estimator": config.estimator,
        "by_distance": bias_by_distance(measured["with"], truth, distance),
        "isolated": isolated,
        "excess_by_distance": excess_by_distance(measured["with"], measured["isolated"], truth, distance),
        "excess_meaning": "median of (f_with - f_without) / f0 over the same targets, backgrounds and positions "
                          "measured with and without the neighbour: the bias the neighbour causes",
    }


def _plot(path: Path, *, pits: dict[str, dict[str, Any]], mag: np.ndarray, binning: str, pit_main: np.ndarray,
          pairs: dict[str, Any] | None, deblend: dict[str, Any] | None, deblend_other: dict[str, Any] | None,
          snr: dict[str, Any], n: int) -> list[float]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.4))
    ax = axes[0, 0]
    centres = (np.arange(20) + 0.5) / 20
    for label, summary in pits.items():
        hist = np.asarray(summary["hist"], dtype=np.float64)
        ax.step(centres, hist / max(hist.mean(), 1e-12), where="mid", label=f"{label} (KS {summary['ks_distance']:.3f})")
    ax.axhline(1.0, color="grey", ls=":")
    ax.legend(fontsize=8)
    ax.set(xlabel="PIT (eq. 13)", ylabel="density / uniform", title=f"PIT, {n} stamps (Fig. 6)")
    bins = np.array([17.5, 20.0, 21.0, 21.5, 22.0, 22.5, 23.0, 24.0])
    cov = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (mag >= lo) & (mag < hi)
        cov.append(float(np.mean((pit_main[sel] > 0.16) & (pit_main[sel] < 0.84))) if sel.sum() else np.nan)
    ax = axes[0, 1]
    ax.plot(0.5 * (bins[:-1] + bins[1:]), cov, "o-")
    ax.axhspan(0.65, 0.71, color="green", alpha=0.15)
    ax.set(xlabel=binning, ylabel="fraction in 16-84 % interval", title="68 % coverage", ylim=(0, 1))
    ax = axes[0, 2]
    if pairs is not None and pairs["by_imag"]:
        x = [0.5 * (b["mag_lo"] + b["mag_hi"]) for b in pairs["by_imag"]]
        ax.plot(x, [b["sigma68_D"] for b in pairs["by_imag"]], "o-")
        ax.axhline(1.0, color="grey", ls=":")
        ax.set(xlabel="i_auto", ylabel="sigma68[D] (eq. 19)", title=f"D width, {pairs['n_pairs']} pairs (Fig. 12)")
    else:
        ax.text(0.5, 0.5, "no survey pairs given", ha="center", va="center")
        ax.set_axis_off()
    ax = axes[1, 0]
    if deblend:
        for name, rows in deblend["by_distance"].items():
            x = [0.5 * (r["d_lo"] + r["d_hi"]) for r in rows]
            ax.plot(x, [np.nan if r["bias"] is None else r["bias"] for r in rows], "o-", label=name)
        for name, other in (deblend_other or {}).items():
            rows = other["by_distance"].get("lumos", [])
            ax.plot([0.5 * (r["d_lo"] + r["d_hi"]) for r in rows],
                    [np.nan if r["bias"] is None else r["bias"] for r in rows], "o:", label=f"lumos, {name} targets")
        rows = deblend["excess_by_distance"].get("lumos", [])
        ax.plot([0.5 * (r["d_lo"] + r["d_hi"]) for r in rows], [np.nan if r["bias"] is None else r["bias"] for r in rows],
                "k--", label="lumos: caused by the neighbour")
        ax.axhspan(-0.1, 0.1, color="green", alpha=0.12)
        ax.axvline(5.0, color="grey", ls=":")
        ax.legend(fontsize=8)
        ax.set(xlabel="neighbour distance (px)", ylabel="bias (f - f0) / f0",
               title=f"i=22 target ({deblend['target_fluxes']} fluxes), i=20 neighbour, {deblend['n_stamps']} stamps")
        ax = axes[1, 1]
        for name, rows in deblend["by_distance"].items():
            x = [0.5 * (r["d_lo"] + r["d_hi"]) for r in rows]
            ax.plot(x, [np.nan if r["sigma68"] is None else r["sigma68"] for r in rows], "o-", label=name)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set(xlabel="neighbour distance (px)", ylabel="sigma68", title="deblending scatter")
    else:
        for a in (axes[1, 0], axes[1, 1]):
            a.text(0.5, 0.5, "deblending test not run", ha="center", va="center")
            a.set_axis_off()
    ax = axes[1, 2]
    bands = list(snr)
    methods = [m for m in ("lumos", "aperture", "optimal") if bands and m in snr[bands[0]]]
    for k, name in enumerate(methods):
        values = [snr[b][name]["snr_empirical"] or np.nan for b in bands]
        ax.bar(np.arange(len(bands)) + (k - 1) * 0.27, values, width=0.27, label=name)
    ax.set_xticks(np.arange(len(bands)), bands, rotation=45, fontsize=8)
    ax.legend(fontsize=8)
    ax.set(ylabel="median f0 / sigma68(f - f0)", title="SNR per band")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return cov


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
        TEAHUPOO directory of held-out stamps (>= 93 px for the baselines).
    out_dir : path-like
    config : ValidateConfig
    pairs_from : (exposure paths, catalogue path), keyword-only
        Survey exposures and their catalogue: the D-statistic test and the deblending stamps.

    Returns
    -------
    dict
        The JSON report; ``report["targets"]`` is the acceptance targets table.
    """
    import matplotlib

    matplotlib.use("Agg")

    from lumos_ops.bench.metrics import compare_methods, comparison_to_dict, plot_comparison
    from lumos_ops.lumos.bayes_reference import bayes_optimal_median
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.prior import prior_only_flux
    from lumos_ops.lumos.targets import issue_targets
    from lumos_ops.sim import TrainingSet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(model, device=config.device)
    ts = TrainingSet(test_set)
    ids = np.arange(len(ts)) if config.split == "all" else ts.indices(config.split)
    ids = ids[: config.max_stamps]
    if ids.size == 0:
        raise LumosValueError(f"{test_set}: no stamps in split {config.split!r}")
    if ids.size < config.min_stamps:
        raise LumosValueError(
            f"{test_set}: {ids.size} stamps in split {config.split!r}, evidence needs >= {config.min_stamps}; "
            "generate more (lumos simulate training-set --n-stamps ...) or lower --min-stamps"
        )
    meta = ts.meta.iloc[ids].reset_index(drop=True)
    truth = meta["flux"].to_numpy(np.float64)
    fluxes_from = _set_fluxes(ts)
    binning = config.binning
    other_binning = "band_mag" if binning == "i_auto" else "i_auto"
    i_auto = meta["i_auto"].to_numpy(np.float64)
    band_mag = _band_mag(meta)
    mag, other_mag = (i_auto, band_mag) if binning == "i_auto" else (band_mag, i_auto)
    lumos = lumos_on_training_set(loaded, ts, ids, batch_size=config.batch_size)
    fluxes: dict[str, np.ndarray] = {"lumos": lumos[ESTIMATORS[config.estimator]].to_numpy(),
                                     "lumos_mean": lumos["mean"].to_numpy(), "lumos_median": lumos["median"].to_numpy(),
                                     "lumos_peak": lumos["mode"].to_numpy()}
    errors: dict[str, tuple[np.ndarray, np.ndarray]] = {"lumos": (fluxes["lumos"], lumos["flux_err"].to_numpy())}
    baselines_done: list[str] = []
    if config.baselines and ts.stamp_size >= _BASELINE_MIN_SIZE:
        from lumos_ops.bench.methods import measure_stamp_set

        split = None if config.split == "all" else config.split
        _, results, _ = measure_stamp_set(test_set, methods=config.baselines, split=split, progress=config.progress)
        for name, frame in results.items():
            fluxes[name] = frame["flux"].to_numpy(np.float64)[: ids.size]
            errors[name] = (fluxes[name], frame["flux_err"].to_numpy(np.float64)[: ids.size])
            baselines_done.append(name)
    fluxes["prior_only"] = prior_only_flux(meta["band"].to_numpy(), i_auto, truth, meta["stamp_id"].to_numpy())
    if "optimal" in errors:
        fluxes["bayes_optimal"] = bayes_optimal_median(meta["band"].to_numpy(), *errors["optimal"], truth,
                                                       meta["stamp_id"].to_numpy())
    metrics = compare_methods(fluxes, truth, mag, n_boot=50)
    methods = comparison_to_dict(metrics)
    plot_comparison(metrics, out / "validation_methods.png",
                    title=f"LUMOS ({loaded.arch}) vs baselines, {ids.size} stamps, bins in {binning}")
    methods_other = comparison_to_dict(compare_methods(fluxes, truth, other_mag, n_boot=0))["binned"]

    pits = {"with CCD position": _pit_summary(lumos, truth)}
    no_ccd: dict[str, Any] | None = None
    if config.no_ccd_model is not None:
        other = load_checkpoint(config.no_ccd_model, device=config.device)
        frame = lumos_on_training_set(other, ts, ids, batch_size=config.batch_size)
        pits["without CCD position"] = _pit_summary(frame, truth)
        no_ccd = {"model": other.path, "model_sha256": other.sha256,
                  "inputs": list(getattr(other.net.config, "inputs", ())),
                  "pit_hist": pits["without CCD position"]["hist"],
                  "pit_ks_distance": pits["without CCD position"]["ks_distance"],
                  **_coverage(frame, truth)}
    coverage = _coverage(lumos, truth)
    snr = _snr_by_band(meta, truth, errors)
    fixed_truth = _fixed_truth(meta, truth, _stamp_crb(ts, ids, truth), errors, lumos, loaded.is_likelihood)

    neighbours: dict[str, Any] = {}
    if "nbr_ref_id" in meta.columns and (meta["nbr_ref_id"] >= 0).any():
        has = (meta["nbr_ref_id"] >= 0).to_numpy()
        for label, sel in (("with_neighbour", has), ("isolated", ~has)):
            sub = compare_methods({k: v[sel] for k, v in fluxes.items()}, truth[sel], mag[sel], n_boot=0)
            neighbours[label] = comparison_to_dict(sub)["overall"]

    pairs: dict[str, Any] | None = None
    deblend: dict[str, Any] | None = None
    deblend_other: dict[str, Any] = {}
    if pairs_from is not None:
        from lumos_ops.io.catalog import read_catalog

        pairs = _pair_d(loaded, list(pairs_from[0]), read_catalog(pairs_from[1]), config.batch_size)
        if config.deblend_stamps > 0:
            deblend, deblend_other = _deblend(loaded, ts, pairs_from, config)

    pit_main = pits["with CCD position"]["_values"]
    cov = _plot(out / "validation.png", pits=pits, mag=mag, binning=binning, pit_main=pit_main, pairs=pairs,
                deblend=deblend, deblend_other=deblend_other, snr=snr, n=int(ids.size))
    targets = issue_targets(methods["overall"], methods["binned"], pit_ks=pits["with CCD position"]["ks_distance"],
                            coverage68=coverage["coverage68_interval"],
                            deblend=None if deblend is None else deblend["by_distance"],
                            deblend_excess=None if deblend is None else deblend["excess_by_distance"],
                            deblend_targets=None if deblend is None else deblend["target_fluxes"], binning=binning)
    summary = {
        "n_stamps": int(ids.size),
        "model": loaded.path,
        "model_sha256": loaded.sha256,
        "test_set_fluxes": fluxes_from,
        "binning": binning,
        "estimator": config.estimator,
        "overall": methods["overall"],
        **coverage,
        "pit_ks_distance": pits["with CCD position"]["ks_distance"],
        "pit_chi2_per_bin": pits["with CCD position"]["chi2_per_bin"],
        "sigma68_D": None if pairs is None else pairs["sigma68_D"],
        "targets_met": sum(1 for t in targets if t["met"]),
        "targets_total": len(targets),
    }
    report = {
        "summary": summary,
        "targets": targets,
        "test_set": str(Path(test_set).resolve()),
        "test_set_fluxes": fluxes_from,
        "test_set_fluxes_meaning": {
            "band_distribution": "paper §2.2: each stamp's flux drawn independently of the galaxy (and of i_auto) "
                                 "from a flux distribution of its band",
            "catalog": "realistic: each galaxy's own SED flux from the survey catalogue (flux tracks i_auto)",
            "auto": "realistic: each galaxy's own SED flux from the survey catalogue (flux tracks i_auto)",
            "flat_spectrum": "a flat f_nu spectrum at the galaxy's i_auto (flux tracks i_auto)",
        }.get(fluxes_from, "unknown"),
        "split": config.split,
        "binning": binning,
        "estimator": config.estimator,
        "estimator_meaning": f"'lumos' is the PDF {config.estimator} (column {ESTIMATORS[config.estimator]!r} of "
                             "lumos measure); lumos_mean, lumos_median and lumos_peak are the three point estimates",
        "methods": methods,
        "fixed_truth": fixed_truth,
        f"methods_by_{other_binning}": methods_other,
        "baselines": baselines_done,
        "missing_baselines": [b for b in config.baselines if b not in baselines_done],
        "prior_only": "per-band power law log10 f = a + b i_auto, two-fold cross-fitted on these stamps (no pixels)",
        "bayes_optimal": None if "bayes_optimal" not in fluxes else
        "information reference: posterior median of the optimal weighted sum's calibrated Gaussian likelihood "
        "times the band's true flux distribution, two-fold cross-fitted (lumos_ops.lumos.bayes_reference)",
        "pit_hist": pits["with CCD position"]["hist"],
        "pit_without_ccd": no_ccd,
        "coverage_by_mag": {"edges": [17.5, 20.0, 21.0, 21.5, 22.0, 22.5, 23.0, 24.0], "coverage68": cov},
        "snr_by_band": snr,
        "deblending": deblend,
        "deblending_other": deblend_other,
        "neighbours_in_test_set": neighbours,
        "pairs": None if pairs is None else {k: v for k, v in pairs.items() if not k.startswith("_")},
    }
    (out / "validation.json").write_text(json.dumps(report, indent=2, default=lambda o: None))
    return report
