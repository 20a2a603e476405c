"""The fixed-truth section of ``lumos validate``: every method scored per bin of true flux and true SNR."""

from __future__ import annotations

from typing import Any

import numpy as np

from lumos_ops.evaluation.report_notes import TRUE_SNR_MEANING

__all__ = ["stamp_crb", "fixed_truth_report"]


def stamp_crb(ts: Any, ids: np.ndarray, truth: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Cramer-Rao flux error (e-/s) of each stamp.

    From the stamp's unit-flux model channel, its robust pixel noise (1.4826 MAD, e-/s) and the
    source's Poisson variance over the stamp's exposure time.

    Parameters
    ----------
    ts : TrainingSet
        TEAHUPOO stamps (channel 0 data, channel 1 unit-flux model) with ``exptime`` (s) in its meta.
    ids : ndarray of int, shape (n,)
        Stamp indices.
    truth : ndarray, shape (n,)
        True fluxes (e-/s).
    chunk : int
        Stamps read at once.

    Returns
    -------
    ndarray, shape (n,)
        The Cramer-Rao bound on the flux error (e-/s).
    """
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


def fixed_truth_report(truth: np.ndarray, crb: np.ndarray, errors: dict[str, tuple[np.ndarray, np.ndarray]],
                       lumos: Any, likelihood: bool) -> dict[str, Any]:
    """Bias, sigma68, pulls and coverage per bin of true flux and true SNR for every method.

    Parameters
    ----------
    truth : ndarray, shape (n,)
        True fluxes (e-/s).
    crb : ndarray, shape (n,)
        Cramer-Rao flux errors (:func:`stamp_crb`, e-/s); the true SNR is ``truth / crb``.
    errors : dict of str to (ndarray, ndarray)
        Per method, measured flux and reported error (e-/s).
    lumos : DataFrame
        LUMOS result table of the same stamps: its 16-84 % interval is scored for ``"lumos"``.
    likelihood : bool
        The model outputs a likelihood: add the PIT with the test set's own flux population (the
        other stamps' true fluxes, :func:`~lumos_ops.evaluation.population_prior.posterior_pit`) as
        prior (``pit_population_prior``).

    Returns
    -------
    dict
        ``true_snr`` (meaning), ``methods`` (``by_true_flux`` and ``by_true_snr`` per method) and,
        with ``likelihood``, ``pit_population_prior`` (``ks_distance``, 10-bin ``hist``).
    """
    from lumos_ops.evaluation.fixed_truth import TRUE_FLUX_EDGES, TRUE_SNR_EDGES, fixed_truth_bins
    from lumos_ops.evaluation.population_prior import posterior_pit
    from lumos_ops.lumos.mixture import mixture_quantile
    from lumos_ops.lumos.mixture_table import mixtures_from_table

    mix = mixtures_from_table(lumos)
    q = mixture_quantile([0.16, 0.84], *mix.args)
    snr = truth / crb
    out: dict[str, Any] = {"true_snr": TRUE_SNR_MEANING, "methods": {}}
    for name, (flux, err) in errors.items():
        lower, upper = (q[:, 0], q[:, 1]) if name == "lumos" else (None, None)
        out["methods"][name] = {
            "by_true_flux": fixed_truth_bins(truth, flux, err, edges=TRUE_FLUX_EDGES, lower=lower, upper=upper, n_boot=100),
            "by_true_snr": fixed_truth_bins(truth, flux, err, by=snr, edges=TRUE_SNR_EDGES, lower=lower, upper=upper,
                                            n_boot=100),
        }
    if likelihood:
        values = np.sort(posterior_pit(truth, mix.alpha, mix.mu, mix.sigma, truncated=mix.truncated))
        values = values[np.isfinite(values)]
        out["pit_population_prior"] = {
            "ks_distance": float(np.max(np.abs(np.arange(1, values.size + 1) / values.size - values))),
            "hist": np.histogram(values, bins=10, range=(0, 1))[0].tolist(),
        }
    return out
