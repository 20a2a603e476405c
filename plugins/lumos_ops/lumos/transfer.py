"""Unsupervised transfer learning (§4.3-4.4): exposure pairs + a supervised simulation subset.

Only the last linear layer (``net.head``) is trained; every other parameter is frozen and the
BatchNorm layers keep their running statistics (eval mode). The loss is eq. (12): the supervised
eq. (8)/(10) loss on TEAHUPOO stamps plus ``pair_weight`` x eq. (11) on pairs of observations of
the same galaxy in the same band, both mixtures calibrated with their exposure's zero point to
nJy (then divided by a common reference factor to keep numbers of order one).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
from lumos_ops.lumos.coadd import njy_factor
from lumos_ops.lumos.losses import transfer_loss
from lumos_ops.lumos.train import centre_crop, output_dir, select_device, write_json_atomic

__all__ = ["TransferConfig", "transfer"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Options of :func:`transfer` (paper: 20k pairs + 20k simulations, lr 1e-5 / 10 every 50 epochs, 100 epochs).

    Attributes
    ----------
    epochs, batch_size : int
        Passes over the pairs; pairs (and simulated stamps) per step.
    lr, lr_step, lr_gamma : float, int, float
        Adam learning rate and its StepLR schedule.
    max_pairs, max_sim : int
        At most this many pairs and simulated stamps (paper: 20,000 each).
    pair_weight : float
        Weight of eq. (11) relative to the supervised loss (1 in the paper).
    default_zero_point : float or None
        ZP for exposures without one; None makes a missing ZP an error.
    seed : int
    device : str or None
    progress : bool
        A tqdm progress bar over each epoch's batches (``lumos transfer -q``: none).
    """

    epochs: int = 100
    batch_size: int = 500
    lr: float = 1e-5
    lr_step: int = 50
    lr_gamma: float = 0.1
    max_pairs: int = 20_000
    max_sim: int = 20_000
    pair_weight: float = 1.0
    default_zero_point: float | None = None
    seed: int = 0
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lr_step", "max_pairs", "max_sim"):
            if int(getattr(self, name)) < 1:
                raise LumosValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LumosValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_gamma <= 1:
            raise LumosValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if self.pair_weight < 0:
            raise LumosValueError(f"pair_weight must be >= 0, got {self.pair_weight}")


def _progress(steps: range, epoch: int, config: TransferConfig) -> Any:
    """tqdm bar over the batch starts ``steps`` of ``epoch`` (0-based), disabled unless ``config.progress``."""
    from tqdm.auto import tqdm

    return tqdm(steps, desc=f"transfer epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                disable=not config.progress)


def _pair_batch(net, inputs, idx: np.ndarray, factor: np.ndarray, device):
    images = torch.from_numpy(inputs.images[idx]).to(device)
    scalars = torch.from_numpy(inputs.scalars[idx]).to(device)
    band_epoch = torch.from_numpy(inputs.band_epoch[idx]).to(device)
    out = net(images, scalars, band_epoch)
    return out.scaled(torch.from_numpy(factor[idx, None].astype(np.float32)).to(device))


def _d_width(net, inputs, pairs: np.ndarray, factor: np.ndarray, flux_scale: float, device, batch: int) -> float:
    """sigma68 of eq. (19) over the pairs, with mean / sqrt(variance) of the untruncated mixtures."""
    from lumos_ops.lumos.mixture import d_statistic, mixture_mean, mixture_variance

    net.eval()
    means, stds = np.empty(len(inputs)), np.empty(len(inputs))
    with torch.inference_mode():
        for lo in range(0, len(inputs), batch):
            idx = np.arange(lo, min(lo + batch, len(inputs)))
            out = _pair_batch(net, inputs, idx, factor, device)
            a = out.log_alpha.exp().double().cpu().numpy()
            a /= a.sum(axis=1, keepdims=True)
            m, s = out.mu.double().cpu().numpy(), out.sigma.double().cpu().numpy()
            means[idx] = mixture_mean(a, m, s) * flux_scale
            stds[idx] = np.sqrt(mixture_variance(a, m, s)) * flux_scale
    d = d_statistic(means[pairs[:, 0]], stds[pairs[:, 0]], means[pairs[:, 1]], stds[pairs[:, 1]])
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    q16, q84 = np.percentile(d, [16, 84])
    return float(0.5 * (q84 - q16))


def transfer(
    model: str | os.PathLike[str] | None,
    exposure_paths: Sequence[str | os.PathLike[str]],
    catalog: pd.DataFrame,
    sim_set: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: TransferConfig,
) -> dict[str, Any]:
    """Fine-tune the last layer of ``model`` with eq. (12); write ``OUT/model.pt`` and ``OUT/metrics.json``.

    Parameters
    ----------
    model : path-like, shipped-model name or None
        Starting checkpoint (None: the shipped default).
    exposure_paths : sequence of path-like
        FITS exposures holding repeated observations (real or simulated).
    catalog : DataFrame
        External catalogue of the targets.
    sim_set : path-like
        TEAHUPOO set for the supervised term (its ``train`` split).
    out_dir : path-like
        Output directory (created once the inputs are read; an existing file is refused).
    config : TransferConfig

    Returns
    -------
    dict
        Metrics: pair and supervised losses per epoch, D-statistic width before and after.
    """
    from torch.utils.data import BatchSampler

    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.data import StampBatches
    from lumos_ops.lumos.pairs import collect_observations, make_pairs

    out = output_dir(out_dir)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    loaded = load_checkpoint(model, device=device)
    net, norm = loaded.net, loaded.normalization
    limit = loaded.metadata.get("truncation_imag", 20.5)
    truncation = math.inf if limit is None else float(limit)

    obs = collect_observations(
        [os.fspath(p) for p in exposure_paths], catalog, norm,
        stamp_size=net.config.stamp_size, default_zero_point=config.default_zero_point, model=loaded,
    )
    pairs = make_pairs(obs.table, max_pairs=config.max_pairs, seed=config.seed)
    if pairs.shape[0] == 0:
        raise LumosValueError("no pairs: no galaxy was observed twice in the same band; give more exposures")
    c = njy_factor(obs.table["zero_point"].to_numpy())
    factor = c / float(np.median(c))

    from lumos_ops.evaluation.stamp_inference import model_band_rows

    ts = centre_crop(TrainingSet(sim_set), net.config.stamp_size)
    if loaded.is_likelihood and ts.flux_prior is None:
        raise LumosValueError(f"{sim_set}: its fluxes follow a population, but {model} is a likelihood model (trained "
                              "under a reference prior): give a set made with --flux-source reference_prior")
    ts.meta["band_epoch"] = model_band_rows(loaded, ts.meta, where=str(sim_set))  # the model's rows, by band name
    sim_ids = ts.indices("train")[: config.max_sim]
    sim = StampBatches(ts, sim_ids, norm, truncation_imag=truncation, flux_prior=ts.flux_prior if loaded.is_likelihood else None)

    for p in net.parameters():
        p.requires_grad_(False)
    for p in net.head.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(net.head.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    d_before = _d_width(net, obs.inputs, pairs, factor, norm.flux_scale, device, config.batch_size)

    history = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        net.eval()  # frozen BatchNorm statistics; only the head learns
        rng = np.random.default_rng(config.seed * 100_003 + epoch)
        order = rng.permutation(pairs.shape[0])
        sim_order = list(BatchSampler(rng.permutation(len(sim)).tolist(), config.batch_size, drop_last=False))
        totals = {"pair": 0.0, "supervised": 0.0}
        steps = 0
        bar = _progress(range(0, order.size, config.batch_size), epoch, config)
        for step, lo in enumerate(bar):
            batch_pairs = pairs[order[lo : lo + config.batch_size]]
            first = _pair_batch(net, obs.inputs, batch_pairs[:, 0], factor, device)
            second = _pair_batch(net, obs.inputs, batch_pairs[:, 1], factor, device)
            sim_batch = {k: v.to(device) for k, v in sim[sim_order[step % len(sim_order)]].items()}
            sim_out = net(sim_batch["images"], sim_batch["scalars"], sim_batch["band_epoch"])
            loss, sup_loss, pair_loss = transfer_loss(
                sim_out, sim_batch["flux"], sim_batch["truncated"], first, second, pair_weight=config.pair_weight,
                sim_weight=sim_batch["weight"], pair_truncated=not loaded.is_likelihood,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals["pair"] += float(pair_loss.detach())
            totals["supervised"] += float(sup_loss.detach())
            steps += 1
            bar.set_postfix(pair=f"{totals['pair'] / steps:.4f}", supervised=f"{totals['supervised'] / steps:.4f}")
        bar.close()
        scheduler.step()
        record = {"epoch": epoch + 1, "pair_loss": totals["pair"] / steps, "supervised_loss": totals["supervised"] / steps}
        history.append(record)
        log.info("transfer epoch %d/%d pair %.4f supervised %.4f", epoch + 1, config.epochs, record["pair_loss"], record["supervised_loss"])

    d_after = _d_width(net, obs.inputs, pairs, factor, norm.flux_scale, device, config.batch_size)
    metadata = {
        **loaded.metadata,
        "transfer": {
            "from_model": loaded.path,
            "from_sha256": loaded.sha256,
            "n_pairs": int(pairs.shape[0]),
            "n_observations": int(len(obs.inputs)),
            "n_sim": int(sim_ids.size),
            "config": {k: v for k, v in dataclasses.asdict(config).items()},
            "d_sigma68_before": d_before,
            "d_sigma68_after": d_after,
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    sha = save_checkpoint(out / "model.pt", net, arch=loaded.arch, normalization=norm, metadata=metadata)
    metrics = {
        "n_pairs": int(pairs.shape[0]),
        "n_sim": int(sim_ids.size),
        "d_sigma68_before": d_before,
        "d_sigma68_after": d_after,
        "history": history,
        "seconds": time.perf_counter() - started,
        "model_sha256": sha,
    }
    write_json_atomic(out / "metrics.json", metrics)
    return metrics
