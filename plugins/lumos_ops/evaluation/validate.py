"""``lumos validate``: the evidence report of a LUMOS model on held-out simulations.

* bias and sigma68 of ``(f - f0) / f0`` per magnitude bin for LUMOS (mean, median and peak of the
  PDF), the classical baselines measured on the same stamps (:mod:`~lumos_ops.evaluation.stamp_photometry`
  and :mod:`~lumos_ops.evaluation.method_comparison`, the paper's Fig. 7; stamps >= 93 px so the
  baselines have their annulus, LUMOS uses the central 60 x 60 pixels), the pixel-free prior
  (:mod:`~lumos_ops.evaluation.prior_only`) and the information reference ``bayes_optimal``
  (:mod:`~lumos_ops.evaluation.bayes_reference`: optimal weights times the true flux prior, the
  sigma68 that the stamps' information allows a calibrated posterior median);
* the same at fixed true flux and true SNR (:mod:`~lumos_ops.evaluation.fixed_truth_report`);
* PIT histogram (eq. 13, Fig. 6) and its Kolmogorov-Smirnov distance from uniform, optionally also
  for a model trained without the CCD position; coverage of the 68 % interval and of mean +- std
  (:mod:`~lumos_ops.evaluation.calibration`);
* SNR per band of LUMOS and of aperture photometry (:mod:`~lumos_ops.evaluation.snr`);
* deblending (Figs. 8-9): an i = 22 target with an i = 20 neighbour at 0-20 px, bias vs distance
  (:mod:`~lumos_ops.evaluation.deblend_report`), and, when the test set has neighbours, with vs without;
* the width sigma68 of the D statistic (eq. 19) of repeated observations of the same galaxy in the
  survey exposures, in equally populated i_auto bins (Fig. 12, :mod:`~lumos_ops.evaluation.pair_width`);
* the acceptance targets table (:mod:`~lumos_ops.evaluation.targets`).

Which fluxes the test stamps carry is stated in the report (``test_set_fluxes``). The bins of the
targets are in i_auto, as in the paper's Fig. 7. The report also bins the same
stamps in the AB magnitude of the true band flux (``methods_by_band_mag``): with the paper's
independent per-band draws the flux does not depend on i_auto, and binning by the truth shows how
far a posterior estimate is pulled towards the training flux distribution at low SNR, which
i_auto bins average out.

Writes ``OUT/validation.json``, ``OUT/validation.png`` (PIT, coverage, D width, deblending, SNR,
:mod:`~lumos_ops.evaluation.validation_plot`) and ``OUT/validation_methods.png`` (bias / sigma68 per
magnitude bin).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.evaluation import report_notes
from lumos_ops.evaluation.calibration import COVERAGE_MAG_EDGES, coverage_by_mag, interval_coverage, pit_summary
from lumos_ops.evaluation.stamp_inference import lumos_on_training_set
from lumos_ops.evaluation.stamp_set_info import band_mag, set_flux_source
from lumos_ops.evaluation.validate_config import BASELINE_MIN_SIZE, ESTIMATORS, ValidateConfig
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.atomic import write_text_atomic

__all__ = ["validate"]

log = logging.getLogger(__name__)

_MAIN = "with CCD position"
_NO_CCD = "without CCD position"


@dataclasses.dataclass
class _Stamps:
    """The evaluated stamps: indices, metadata, true flux (e-/s) and the two magnitudes (AB) binned in."""

    ids: np.ndarray
    meta: pd.DataFrame
    truth: np.ndarray
    mag: np.ndarray
    other_mag: np.ndarray


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

    from lumos_ops.evaluation.fixed_truth_report import fixed_truth_report, stamp_crb
    from lumos_ops.evaluation.method_comparison import compare_methods, comparison_to_dict, plot_comparison
    from lumos_ops.evaluation.snr import snr_by_band
    from lumos_ops.evaluation.validation_plot import plot_validation
    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.checkpoint import load_checkpoint

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: is a file; give --out a folder for validation.json and the plots")
    loaded = load_checkpoint(model, device=config.device)
    ts = TrainingSet(test_set)
    overlap = training_overlap(loaded, ts)
    if overlap:
        log.warning("%s", overlap)
    out.mkdir(parents=True, exist_ok=True)
    stamps = _select_stamps(ts, test_set, config)
    lumos = lumos_on_training_set(loaded, ts, stamps.ids, batch_size=config.batch_size)
    fluxes, errors = _lumos_fluxes(lumos, config.estimator)
    baselines_done = _add_baselines(test_set, ts, stamps, config, fluxes, errors)
    _add_references(stamps, fluxes, errors)
    metrics = compare_methods(fluxes, stamps.truth, stamps.mag, n_boot=50)
    methods = comparison_to_dict(metrics)
    plot_comparison(metrics, out / "validation_methods.png",
                    title=f"LUMOS ({loaded.arch}) vs baselines, {stamps.ids.size} stamps, bins in {config.binning}")
    methods_other = comparison_to_dict(compare_methods(fluxes, stamps.truth, stamps.other_mag, n_boot=0))["binned"]

    pits = {_MAIN: pit_summary(lumos, stamps.truth)}
    no_ccd = None if config.no_ccd_model is None else _no_ccd_pit(ts, stamps, config, pits)
    coverage = interval_coverage(lumos, stamps.truth)
    snr = snr_by_band(stamps.meta, stamps.truth, errors)
    fixed_truth = fixed_truth_report(stamps.truth, stamp_crb(ts, stamps.ids, stamps.truth), errors, lumos,
                                     loaded.is_likelihood)
    neighbours = _neighbour_split(stamps, fluxes)
    pairs, deblend, deblend_other = _survey_tests(loaded, ts, pairs_from, config)

    cov = coverage_by_mag(pits[_MAIN]["_values"], stamps.mag)
    plot_validation(out / "validation.png", pits=pits, coverage=cov, binning=config.binning, pairs=pairs,
                    deblend=deblend, deblend_other=deblend_other, snr=snr, n=int(stamps.ids.size))
    report = _report(
        loaded=loaded, test_set=test_set, ts=ts, config=config, stamps=stamps, methods=methods,
        methods_other=methods_other, fixed_truth=fixed_truth, pits=pits, coverage=coverage, cov=cov,
        no_ccd=no_ccd, snr=snr, pairs=pairs, deblend=deblend, deblend_other=deblend_other, neighbours=neighbours,
        baselines_done=baselines_done, has_bayes="bayes_optimal" in fluxes,
    )
    report["training_overlap"] = overlap
    write_text_atomic(out / "validation.json", json.dumps(report, indent=2, default=lambda o: None))
    return report


def training_overlap(loaded: Any, ts: Any) -> str | None:
    """What the test set shares with the sets the model was trained on, as a sentence; None when
    nothing (or when the checkpoint records none of them).

    The sets: the one ``lumos adapt`` fine-tuned on (checked first: it holds the survey's own
    exposures) and the one the base network was trained on. The same set (another split draws other
    stamps from the same exposures' backgrounds) or any source exposure in common: the scores then
    are not on held-out pixels.
    """
    adapted = loaded.metadata.get("adapt") or {}
    for trained_on in filter(None, (adapted.get("training_set"), loaded.metadata.get("training_set"))):
        trained_on = Path(trained_on)
        if trained_on.resolve() == ts.path.resolve():
            return (f"{ts.path}: is the model's own training set (other stamps of the same exposures' "
                    "backgrounds); its scores are not on held-out exposures")
        try:
            exposures = json.loads((trained_on / "manifest.json").read_text()).get("exposures", [])
        except (OSError, ValueError):
            continue
        shared = ({os.path.abspath(p) for p in exposures}
                  & {os.path.abspath(p) for p in ts.manifest.get("exposures", [])})
        if shared:
            return (f"{ts.path}: {len(shared)} of its source exposures are in the model's training set {trained_on} "
                    f"(e.g. {sorted(shared)[0]}); its scores are not on held-out exposures")
    return None


def _select_stamps(ts: Any, test_set: str | os.PathLike[str], config: ValidateConfig) -> _Stamps:
    """The stamps of ``config.split`` (the first ``max_stamps``), refused when fewer than ``min_stamps``."""
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
    i_auto = meta["i_auto"].to_numpy(np.float64)
    true_mag = band_mag(meta)
    mag, other_mag = (i_auto, true_mag) if config.binning == "i_auto" else (true_mag, i_auto)
    return _Stamps(ids=ids, meta=meta, truth=meta["flux"].to_numpy(np.float64), mag=mag, other_mag=other_mag)


def _lumos_fluxes(lumos: pd.DataFrame, estimator: str) -> tuple[dict[str, np.ndarray],
                                                                dict[str, tuple[np.ndarray, np.ndarray]]]:
    """LUMOS point estimates by method name and the scored one's ``(flux, flux_err)`` (e-/s)."""
    fluxes = {"lumos": lumos[ESTIMATORS[estimator]].to_numpy(), "lumos_mean": lumos["mean"].to_numpy(),
              "lumos_median": lumos["median"].to_numpy(), "lumos_peak": lumos["mode"].to_numpy()}
    return fluxes, {"lumos": (fluxes["lumos"], lumos["flux_err"].to_numpy())}


def _add_baselines(test_set: str | os.PathLike[str], ts: Any, stamps: _Stamps, config: ValidateConfig,
                   fluxes: dict[str, np.ndarray], errors: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Measure the classical baselines on the same stamps into ``fluxes`` and ``errors``; their names."""
    done: list[str] = []
    if not config.baselines or ts.stamp_size < BASELINE_MIN_SIZE:
        return done
    from lumos_ops.evaluation.stamp_photometry import measure_stamp_set

    n = stamps.ids.size
    split = None if config.split == "all" else config.split
    _, results, _ = measure_stamp_set(test_set, methods=config.baselines, split=split, progress=config.progress)
    for name, frame in results.items():
        fluxes[name] = frame["flux"].to_numpy(np.float64)[:n]
        errors[name] = (fluxes[name], frame["flux_err"].to_numpy(np.float64)[:n])
        done.append(name)
    return done


def _add_references(stamps: _Stamps, fluxes: dict[str, np.ndarray],
                    errors: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Add the pixel-free ``prior_only`` and, with the optimal sum measured, ``bayes_optimal`` to ``fluxes``."""
    from lumos_ops.evaluation.bayes_reference import bayes_optimal_median
    from lumos_ops.evaluation.prior_only import prior_only_flux

    band, stamp_id = stamps.meta["band"].to_numpy(), stamps.meta["stamp_id"].to_numpy()
    fluxes["prior_only"] = prior_only_flux(band, stamps.meta["i_auto"].to_numpy(np.float64), stamps.truth, stamp_id)
    if "optimal" in errors:
        fluxes["bayes_optimal"] = bayes_optimal_median(band, *errors["optimal"], stamps.truth, stamp_id)


def _no_ccd_pit(ts: Any, stamps: _Stamps, config: ValidateConfig, pits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """PIT and coverage of the model trained without the CCD position; adds its PIT to ``pits``."""
    from lumos_ops.lumos.checkpoint import load_checkpoint

    other = load_checkpoint(config.no_ccd_model, device=config.device)
    frame = lumos_on_training_set(other, ts, stamps.ids, batch_size=config.batch_size)
    pits[_NO_CCD] = pit_summary(frame, stamps.truth)
    return {"model": other.path, "model_sha256": other.sha256,
            "inputs": list(getattr(other.net.config, "inputs", ())),
            "pit_hist": pits[_NO_CCD]["hist"],
            "pit_ks_distance": pits[_NO_CCD]["ks_distance"],
            **interval_coverage(frame, stamps.truth)}


def _neighbour_split(stamps: _Stamps, fluxes: dict[str, np.ndarray]) -> dict[str, Any]:
    """Overall metrics of the stamps with and without a neighbour, when the test set has neighbours."""
    from lumos_ops.evaluation.method_comparison import compare_methods, comparison_to_dict

    meta = stamps.meta
    neighbours: dict[str, Any] = {}
    if "nbr_ref_id" in meta.columns and (meta["nbr_ref_id"] >= 0).any():
        has = (meta["nbr_ref_id"] >= 0).to_numpy()
        for label, sel in (("with_neighbour", has), ("isolated", ~has)):
            sub = compare_methods({k: v[sel] for k, v in fluxes.items()}, stamps.truth[sel], stamps.mag[sel], n_boot=0)
            neighbours[label] = comparison_to_dict(sub)["overall"]
    return neighbours


def _survey_tests(loaded: Any, ts: Any, pairs_from: tuple[Sequence[str], str | os.PathLike[str]] | None,
                  config: ValidateConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]:
    """The D width of repeated observations and the deblending test, when survey exposures are given."""
    if pairs_from is None:
        return None, None, {}
    from lumos_ops.evaluation.deblend_report import run_deblending
    from lumos_ops.evaluation.pair_width import pair_d_width
    from lumos_ops.io.catalog import read_catalog

    pairs = pair_d_width(loaded, list(pairs_from[0]), read_catalog(pairs_from[1]), config.batch_size)
    if config.deblend_stamps <= 0:
        return pairs, None, {}
    deblend, deblend_other = run_deblending(loaded, ts, pairs_from, config)
    return pairs, deblend, deblend_other


def _report(*, loaded: Any, test_set: str | os.PathLike[str], ts: Any, config: ValidateConfig, stamps: _Stamps,
            methods: dict[str, Any], methods_other: dict[str, Any], fixed_truth: dict[str, Any],
            pits: dict[str, dict[str, Any]], coverage: dict[str, float], cov: list[float], no_ccd: dict[str, Any] | None,
            snr: dict[str, Any], pairs: dict[str, Any] | None, deblend: dict[str, Any] | None,
            deblend_other: dict[str, Any], neighbours: dict[str, Any], baselines_done: list[str],
            has_bayes: bool) -> dict[str, Any]:
    """The content of ``validation.json``."""
    from lumos_ops.evaluation.targets import issue_targets
    from lumos_ops.provenance import code_provenance

    fluxes_from = set_flux_source(ts)
    other_binning = "band_mag" if config.binning == "i_auto" else "i_auto"
    targets = issue_targets(methods["overall"], methods["binned"], pit_ks=pits[_MAIN]["ks_distance"],
                            coverage68=coverage["coverage68_interval"],
                            population_pit_ks=fixed_truth.get("pit_population_prior", {}).get("ks_distance"),
                            deblend=None if deblend is None else deblend["by_distance"],
                            deblend_excess=None if deblend is None else deblend["excess_by_distance"],
                            deblend_targets=None if deblend is None else deblend["target_fluxes"],
                            binning=config.binning)
    summary = {
        "n_stamps": int(stamps.ids.size),
        "model": loaded.path,
        "model_sha256": loaded.sha256,
        "test_set_fluxes": fluxes_from,
        "binning": config.binning,
        "estimator": config.estimator,
        "overall": methods["overall"],
        **coverage,
        "pit_ks_distance": pits[_MAIN]["ks_distance"],
        "pit_chi2_per_bin": pits[_MAIN]["chi2_per_bin"],
        "sigma68_D": None if pairs is None else pairs["sigma68_D"],
        "targets_met": sum(1 for t in targets if t["met"]),
        "targets_total": len(targets),
    }
    return {
        "summary": summary,
        "targets": targets,
        "test_set": str(Path(test_set).resolve()),
        "test_set_fluxes": fluxes_from,
        "test_set_fluxes_meaning": report_notes.FLUX_SOURCE_MEANING.get(fluxes_from, "unknown"),
        "split": config.split,
        "binning": config.binning,
        "estimator": config.estimator,
        "estimator_meaning": report_notes.estimator_meaning(config.estimator, ESTIMATORS[config.estimator]),
        "methods": methods,
        "fixed_truth": fixed_truth,
        f"methods_by_{other_binning}": methods_other,
        "baselines": baselines_done,
        "missing_baselines": [b for b in config.baselines if b not in baselines_done],
        "prior_only": report_notes.PRIOR_ONLY_MEANING,
        "bayes_optimal": report_notes.BAYES_OPTIMAL_MEANING if has_bayes else None,
        "pit_hist": pits[_MAIN]["hist"],
        "pit_without_ccd": no_ccd,
        "coverage_by_mag": {"edges": list(COVERAGE_MAG_EDGES), "coverage68": cov},
        "snr_by_band": snr,
        "deblending": deblend,
        "deblending_other": deblend_other,
        "neighbours_in_test_set": neighbours,
        "pairs": None if pairs is None else {k: v for k, v in pairs.items() if not k.startswith("_")},
        "code": code_provenance(),
    }
