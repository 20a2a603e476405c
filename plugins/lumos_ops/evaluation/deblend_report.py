"""The deblending run of ``lumos validate`` (Figs. 8-9): stamps made, measured and summarised.

For every choice of target fluxes (``ValidateConfig.deblend_fluxes``) the stamps of
:func:`lumos_ops.evaluation.deblend.make_deblend_set` are written twice, with and without the i = 20
neighbour, measured by LUMOS and the baselines, and summarised as bias and sigma68 per neighbour
distance plus the bias the neighbour itself causes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lumos_ops.evaluation.report_notes import DEBLEND_EXCESS_MEANING, DEBLEND_TARGETS_MEANING
from lumos_ops.evaluation.validate_config import ESTIMATORS, ValidateConfig

__all__ = ["run_deblending"]

TARGET_I_AUTO = 22.0
"""i_auto (AB) of the deblending targets."""
NEIGHBOUR_I_AUTO = 20.0
"""i_auto (AB) of their neighbours."""

PairsFrom = tuple[Sequence[str], str]
"""Survey exposures and their catalogue path."""


def run_deblending(loaded: Any, ts: Any, pairs_from: PairsFrom,
                   config: ValidateConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The deblending test once per ``config.deblend_fluxes`` entry.

    Parameters
    ----------
    loaded : LoadedModel
        The LUMOS model (``lumos_ops.lumos.checkpoint.load_checkpoint``).
    ts : TrainingSet
        The test set, whose generator's flux options the ``"test_set"`` targets copy.
    pairs_from : (sequence of str, str)
        Survey exposures the stamps are cut from and their catalogue.
    config : ValidateConfig
        ``deblend_fluxes``, ``deblend_stamps``, ``seed``, ``estimator``, ``baselines``...

    Returns
    -------
    scored : dict
        The test of the first entry (``report["deblending"]``).
    others : dict of str to dict
        The tests of the other entries, by name; identical choices are run once.
    """
    from lumos_ops.evaluation.deblend import TARGET_FLUX_FIELDS
    from lumos_ops.evaluation.stamp_set_info import set_config

    options = set_config(ts)
    drawn = options.get("flux_source") == "band_distribution"
    choices = {"catalog": None,
               "test_set": {k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items()
                            if k in TARGET_FLUX_FIELDS} if drawn else None}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lumos-deblend-") as tmp:
        for name in config.deblend_fluxes:
            same = [k for k in results if choices[k] == choices[name]]
            results[name] = {**results[same[0]], "target_fluxes": name} if same else _deblend_once(
                loaded, pairs_from, Path(tmp) / f"stamps-{name}", config, name, choices[name])
    first, *rest = config.deblend_fluxes
    return results[first], {name: results[name] for name in rest}


def _measure_both(loaded: Any, pairs_from: PairsFrom, path: Path, config: ValidateConfig,
                  target_flux: dict[str, Any] | None) -> tuple[dict[str, dict[str, np.ndarray]], Any]:
    """Fluxes (e-/s) per method of the stamps with (``"with"``) and without (``"isolated"``) the
    neighbour, and the metadata of the stamps with it."""
    from lumos_ops.evaluation.deblend import make_deblend_set
    from lumos_ops.evaluation.stamp_inference import lumos_on_training_set
    from lumos_ops.evaluation.stamp_photometry import measure_stamp_set
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.io.training_set import TrainingSet

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
    return measured, meta


def _deblend_once(loaded: Any, pairs_from: PairsFrom, path: Path, config: ValidateConfig, name: str,
                  target_flux: dict[str, Any] | None) -> dict[str, Any]:
    """One deblending test: bias and sigma68 per neighbour distance, isolated control, paired excess."""
    from lumos_ops.evaluation.deblend import bias_by_distance, excess_by_distance
    from lumos_ops.stats import bias, relative_error, sigma68

    measured, meta = _measure_both(loaded, pairs_from, path, config, target_flux)
    truth = meta["flux"].to_numpy(np.float64)
    distance = np.hypot(meta["nbr_dx"].to_numpy(), meta["nbr_dy"].to_numpy())
    isolated = {}
    for method, flux in measured["isolated"].items():
        rel = relative_error(flux, truth)
        isolated[method] = {"n": int(np.isfinite(rel).sum()), "bias": bias(rel), "sigma68": sigma68(rel)}
    return {
        "n_stamps": int(len(truth)),
        "target_i_auto": TARGET_I_AUTO,
        "neighbour_i_auto": NEIGHBOUR_I_AUTO,
        "distance_px": [0.0, 20.0],
        "target_fluxes": name,
        "target_fluxes_meaning": DEBLEND_TARGETS_MEANING[name],
        "target_flux_quantiles_e_per_s": dict(zip(("p5", "p50", "p95"), np.percentile(truth, [5, 50, 95]).tolist())),
        "estimator": config.estimator,
        "by_distance": bias_by_distance(measured["with"], truth, distance),
        "isolated": isolated,
        "excess_by_distance": excess_by_distance(measured["with"], measured["isolated"], truth, distance),
        "excess_meaning": DEBLEND_EXCESS_MEANING,
    }
