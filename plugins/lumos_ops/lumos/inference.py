"""Batched LUMOS inference: normalised inputs -> Gaussian mixtures in e-/s -> statistics."""

from __future__ import annotations

import numpy as np
import torch

from lumos_ops.constants import BRIGHT_LOSS_IMAG
from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.checkpoint import LoadedModel
from lumos_ops.lumos.fastpath import inference_callable
from lumos_ops.lumos.mixture import summarize
from lumos_ops.lumos.mixture_table import TRUNCATED, Mixtures, mixture_columns
from lumos_ops.lumos.preprocess import NetInputs

__all__ = ["Mixtures", "predict_mixtures", "truncation_mask", "mixture_table", "CPU_BATCH"]
# Mixtures lives in lumos_ops.lumos.mixture_table (no torch there); predict_mixtures returns it.

CPU_BATCH: int = 128
"""Most rows per network call on the CPU. The activations of 128 stamps stay in the CPU caches:
one thread runs 2,500 targets in about half the CPU time of 512-row calls (0.52 against 0.98 s,
``benchmarks/bench_ccd.py``'s machine). The outputs there were bit for bit those of larger calls
(32 to 1,024 rows); oneDNN may pick other kernels for other sizes on another CPU (float32
rounding)."""


def truncation_mask(i_auto: np.ndarray, loaded: LoadedModel) -> np.ndarray:
    """Rows trained with eq. (10): ``i_auto >= metadata['truncation_imag']`` (default 20.5); none for a
    network trained under a reference prior (``truncation_imag`` None: its likelihood extends below 0)."""
    limit = loaded.metadata.get("truncation_imag", BRIGHT_LOSS_IMAG)
    if limit is None:
        return np.zeros(np.shape(i_auto), dtype=bool)
    limit = float(limit)
    return np.asarray(i_auto, dtype=np.float64) >= limit


def predict_mixtures(
    loaded: LoadedModel, inputs: NetInputs, i_auto: np.ndarray, *, batch_size: int = 1024, optimize: bool = True
) -> Mixtures:
    """Run the network over every target, ``batch_size`` at a time (all batches kept).

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`lumos_ops.lumos.checkpoint.load_checkpoint` (device chosen there).
    inputs : NetInputs
        Normalised inputs of n targets.
    i_auto : ndarray, shape (n,)
        Catalogue magnitudes (select the truncated rows).
    batch_size : int, keyword-only
        Most rows per network call; on the CPU at most :data:`CPU_BATCH`.
    optimize : bool, keyword-only
        On CPU, run a frozen TorchScript graph of the network (:mod:`lumos_ops.lumos.fastpath`,
        same outputs to float32 rounding, about 4x faster); False runs eager PyTorch.

    Returns
    -------
    Mixtures
        Means and widths multiplied back by ``normalization.flux_scale`` (e-/s).
    """
    if batch_size < 1:
        raise LumosValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(inputs)
    k = loaded.net.config.n_components
    log_alpha = np.empty((n, k), dtype=np.float64)
    mu = np.empty((n, k), dtype=np.float64)
    sigma = np.empty((n, k), dtype=np.float64)
    net, device = loaded.net, loaded.device
    step = min(batch_size, CPU_BATCH) if torch.device(device).type == "cpu" else batch_size
    net.eval()
    run = None
    with torch.inference_mode():
        for start in range(0, n, step):
            stop = min(start + step, n)
            batch = (
                torch.from_numpy(inputs.images[start:stop]).to(device, non_blocking=True),
                torch.from_numpy(inputs.scalars[start:stop]).to(device, non_blocking=True),
                torch.from_numpy(inputs.band_epoch[start:stop]).to(device, non_blocking=True),
            )
            if run is None:
                run = inference_callable(net, *batch, optimize=optimize)
            out = run(*batch)
            log_alpha[start:stop] = out.log_alpha.double().cpu().numpy()
            mu[start:stop] = out.mu.double().cpu().numpy()
            sigma[start:stop] = out.sigma.double().cpu().numpy()
    scale = loaded.normalization.flux_scale
    alpha = np.exp(log_alpha)
    alpha /= alpha.sum(axis=1, keepdims=True)
    return Mixtures(alpha=alpha, mu=mu * scale, sigma=sigma * scale, truncated=truncation_mask(i_auto, loaded))


def mixture_table(mixtures: Mixtures, *, likelihood: bool = True) -> dict[str, np.ndarray]:
    """Columns of a LUMOS result (e-/s): flux, flux_err, the mixture (``alpha_k``, ``mu_k``, ``sigma_k``,
    k = 0..K-1, from :func:`~lumos_ops.lumos.mixture_table.mixture_columns`), mean (eq. 15), std
    (sqrt eq. 16), median, mode, sigma68, sigma95, eta, truncated, likelihood.

    With ``likelihood`` (a network trained under a reference prior: its PDF is the normalised
    likelihood), ``flux`` is the likelihood's median and ``flux_err`` its 68 % half-width
    ``(q84 - q16) / 2``: meant to be unbiased at fixed true flux with frequentist 68 % coverage
    (docs/likelihood.md; models/MODEL_CARD.md has how close the shipped model comes). Otherwise (a posterior under the training population) ``flux`` is the
    posterior mean (eq. 15) and ``flux_err`` the square root of eq. (16).
    """
    stats = summarize(*mixtures.args)
    if likelihood:
        columns: dict[str, np.ndarray] = {"flux": stats["median"], "flux_err": stats["sigma68"]}
    else:
        columns = {"flux": stats["mean"], "flux_err": stats["std"]}
    columns.update(mixture_columns(mixtures))
    for name in ("mean", "std", "median", "mode", "sigma68", "sigma95", "eta"):
        columns[name] = stats[name]
    columns[TRUNCATED] = columns.pop(TRUNCATED)  # after the statistics, as documented
    columns["likelihood"] = np.full(mixtures.truncated.shape, bool(likelihood))
    return columns
