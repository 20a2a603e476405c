"""Supervised training of LUMOS on a TEAHUPOO training set (§4.4).

Adam + StepLR (paper: lr 1e-4 divided by 10 every 40 epochs, batch 500, 100 epochs), eq. (8) for
i_auto < 20.5 and eq. (10) fainter. The last ``frozen_bn_epochs`` epochs train with every BatchNorm
layer in eval mode (running statistics frozen, affine weights still learnt), so that the network
that is evaluated and shipped is the one that was optimised; see :class:`TrainConfig`.

Every epoch writes ``OUT/train_state.pt`` (model, optimizer, scheduler, epoch, history: each
epoch's losses, the learning rate it trained with and its seconds; ``--resume`` continues from it) and ``OUT/model.pt`` (the checkpoint of the epoch with the lowest
validation loss); the end writes ``OUT/metrics.json``.

On CPU the run is deterministic for a fixed seed (torch's CPU kernels are; one data-loading
process; weights initialised from ``torch.manual_seed(seed)``; epoch permutations drawn from the
seed and the epoch number, so a resumed run sees the same batches). On CUDA it uses bfloat16
autocast (no gradient scaler needed), losses in float32.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lumos_ops import __version__
from lumos_ops.constants import BRIGHT_LOSS_IMAG, CCD_SHAPE
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.lumos.checkpoint import save_checkpoint
from lumos_ops.lumos.config import SCALAR_NAMES, STAMP_BACKGROUNDS, Normalization
from lumos_ops.lumos.losses import supervised_loss
from lumos_ops.lumos.model import LumosNet, get_model, list_models, widened_state

if TYPE_CHECKING:
    from lumos_ops.io.training_set import TrainingSet

__all__ = ["TrainConfig", "train", "evaluate_split", "select_device", "infer_ccd_shape", "freeze_batchnorm",
           "training_set_bands", "psf_range_metadata", "TRAINING_SET_SURVEY"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`train`.

    Attributes
    ----------
    arch : str
        Registry name (``"fast"``, ``"paper"``).
    epochs, batch_size : int
    lr : float
        Initial Adam learning rate.
    lr_step : int
        Epochs between learning-rate divisions (StepLR ``step_size``).
    lr_gamma : float
        Multiplicative factor of every step (0.1 in the paper).
    seed : int
    device : str or None
        None: CUDA when available, else CPU.
    amp : bool
        bfloat16 autocast on CUDA (ignored on CPU).
    truncation_imag : float
        i_auto from which eq. (10) replaces eq. (8).
    ccd_shape : (int, int)
        CCD (ny, nx) used to map positions to [-1, 1].
    max_train, max_val : int or None
        Use at most this many stamps of the split (first ids; None = all).
    norm_sample : int
        Training stamps used to estimate the normalisation.
    num_threads : int or None
        ``torch.set_num_threads`` on CPU (None leaves torch's default).
    drop_inputs : tuple of str
        Scalar inputs to hide from the network (e.g. ``("i_auto",)``; see ``ModelConfig.inputs``).
    frozen_bn_epochs : int
        Train the last this-many epochs with BatchNorm in eval mode (its running statistics
        frozen). In training mode a BatchNorm layer normalises each batch by that batch's own
        statistics; with heavy-tailed stamps (bright added neighbours) the network learns a
        function of those per-batch statistics that the averaged running statistics used at
        inference do not reproduce, and its PDFs come out shifted (``lumos-fast-v7``: mean PIT
        0.457 on its own training stamps in eval mode, 0.503 with per-batch statistics). 0 trains
        every epoch in training mode.
    progress : bool
        tqdm progress bars.
    init_model : str or None
        Fine-tuning: a checkpoint (path or shipped-model name) whose weights, BatchNorm running
        statistics and normalisation the training starts from, every layer trained (its
        architecture and band x epoch rows must match; the inputs it does not read stay dropped,
        and ``drop_inputs`` may drop more of them: their weights are kept and multiplied by zero;
        a ``fast-mf`` checkpoint may start a ``fast-mf-r`` training, whose width
        head starts at zero: :func:`~lumos_ops.lumos.model.widened_state`); None starts from weights
        initialised by ``seed``.
    stamp_background : str or None
        How the stamp background is estimated (``Normalization.stamp_background``, one of
        :data:`~lumos_ops.lumos.config.STAMP_BACKGROUNDS`); None: ``init_model``'s, else
        ``"median"``. With ``init_model`` and another method, the background input's mean and
        standard deviation are measured again on the training stamps.
    train_only : str or None
        Name of one submodule of the network (e.g. ``"width_head"``) whose weights alone are trained;
        the others, BatchNorm running statistics included, keep the values they start with. None
        trains every layer.
    balanced_weights : bool
        Reference-prior training sets only: weight the loss by ``ReferencePrior.balanced_weights``
        (the stamp's matched-filter flux in the denominator of the importance weight), which keeps
        the normalised likelihood as the minimiser and gives the faint stamps their share of the
        loss (docs/likelihood.md §15); False: ``importance_weights``.
    """

    arch: str = "fast"
    epochs: int = 10
    batch_size: int = 500
    lr: float = 1e-4
    lr_step: int = 40
    lr_gamma: float = 0.1
    seed: int = 0
    device: str | None = None
    amp: bool = True
    truncation_imag: float = BRIGHT_LOSS_IMAG
    ccd_shape: tuple[int, int] = CCD_SHAPE
    max_train: int | None = None
    max_val: int | None = None
    norm_sample: int = 4096
    num_threads: int | None = None
    drop_inputs: tuple[str, ...] = ()
    frozen_bn_epochs: int = 0
    progress: bool = True
    init_model: str | None = None
    stamp_background: str | None = None
    train_only: str | None = None
    balanced_weights: bool = False

    def __post_init__(self) -> None:
        if self.arch not in list_models():
            raise LumosValueError(f"arch must be one of {list_models()}, got {self.arch!r}")
        for name in ("epochs", "batch_size", "lr_step", "norm_sample"):
            if int(getattr(self, name)) < 1:
                raise LumosValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LumosValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_gamma <= 1:
            raise LumosValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0 <= int(self.frozen_bn_epochs) <= int(self.epochs):
            raise LumosValueError(f"frozen_bn_epochs must be in [0, epochs={self.epochs}], got {self.frozen_bn_epochs}")
        object.__setattr__(self, "ccd_shape", tuple(int(v) for v in self.ccd_shape))
        object.__setattr__(self, "drop_inputs", tuple(self.drop_inputs))
        if self.stamp_background is not None and self.stamp_background not in STAMP_BACKGROUNDS:
            raise LumosValueError(f"stamp_background must be one of {STAMP_BACKGROUNDS}, got {self.stamp_background!r}")
        unknown = [v for v in self.drop_inputs if v not in SCALAR_NAMES]
        if unknown:
            raise LumosValueError(f"drop_inputs must name some of {SCALAR_NAMES}, got {unknown}")


def infer_ccd_shape(training_set: str | os.PathLike[str]) -> tuple[int, int]:
    """CCD shape (ny, nx) of the first source exposure listed in a set's manifest.

    Paths are tried as written, then relative to the set's parent directory; when none can be
    read, :data:`lumos_ops.constants.CCD_SHAPE` is returned (and logged).
    """
    from astropy.io import fits

    root = Path(training_set)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    for entry in list(manifest.get("exposures", []))[:1]:
        for candidate in (Path(entry), root.parent / entry, root / entry):
            if candidate.is_file():
                with fits.open(candidate) as hdul:
                    for hdu in hdul:
                        if hdu.header.get("NAXIS") == 2:
                            return int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"])
    log.warning("%s: cannot read a source exposure; assuming the PAUCam CCD shape %s", root, CCD_SHAPE)
    return CCD_SHAPE


TRAINING_SET_SURVEY = "survey.json"
"""Survey file of a training set, next to its manifest (the band order of its ``band_epoch`` rows)."""


def training_set_bands(ts, survey=None) -> dict[str, Any]:
    """Band x epoch embedding of a model trained on ``ts``: ``{"bands", "n_epochs", "band_wavelengths_nm"}``.

    From the training set's manifest (``bands``, ``n_epochs``, ``band_wavelengths_nm``), else the
    survey file ``survey.json`` that ``lumos simulate training-set`` writes next to it, else
    ``survey`` (its ``embedding_bands``), else the 40 PAUS narrow bands over two camera epochs.
    The rows of ``meta.parquet`` (``band_epoch``) must lie in ``0 ... len(bands) * n_epochs - 1``.
    """
    from lumos_ops.constants import N_EPOCHS, NB_BANDS, band_centre_nm
    from lumos_ops.survey import load_survey

    manifest = ts.manifest
    if not manifest.get("bands") and (ts.path / TRAINING_SET_SURVEY).is_file():
        survey = load_survey(ts.path / TRAINING_SET_SURVEY)
    if manifest.get("bands"):
        bands = tuple(str(b) for b in manifest["bands"])
        n_epochs = int(manifest.get("n_epochs", N_EPOCHS))
        wavelengths = {str(k): float(v) for k, v in (manifest.get("band_wavelengths_nm") or {}).items()}
    elif survey is not None:
        bands, n_epochs = survey.embedding_bands, survey.n_epochs
        wavelengths = {b: survey.band(b).wavelength_nm for b in bands}
    else:
        bands, n_epochs = NB_BANDS, N_EPOCHS
        wavelengths = {b: band_centre_nm(b) for b in bands}
    rows = ts.meta["band_epoch"].to_numpy(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= len(bands) * n_epochs):
        raise LumosValueError(
            f"{ts.path}: band_epoch rows {int(rows.min())}...{int(rows.max())} "
            f"exceed the {len(bands)} bands x {n_epochs} epochs of the embedding; generate it with the same --survey"
        )
    return {"bands": list(bands), "n_epochs": int(n_epochs), "band_wavelengths_nm": wavelengths}


def select_device(device: str | None) -> torch.device:
    """The requested device, or CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LumosValueError(f"device={device!r} but CUDA is not available; use --device cpu")
    return torch.device(device)


def _loader(dataset, batch_size: int, *, shuffle_seed: int | None):
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    if shuffle_seed is None:
        order = SequentialSampler(range(len(dataset)))
    else:
        order = np.random.default_rng(shuffle_seed).permutation(len(dataset)).tolist()
    sampler = BatchSampler(order, batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def freeze_batchnorm(net: torch.nn.Module) -> int:
    """Put every BatchNorm layer of ``net`` in eval mode (running statistics used and not updated).

    Their affine weights keep ``requires_grad``, so they are still learnt. Returns the number of
    layers frozen. Call after ``net.train()``, which sets them back to training mode.
    """
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.eval()
    return len(layers)


def _forward(net: LumosNet, batch: dict[str, torch.Tensor], device: torch.device, amp: bool):
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        return net(batch["images"], batch["scalars"], batch["band_epoch"])


def evaluate_split(net: LumosNet, loader, device: torch.device, *, amp: bool = False) -> dict[str, Any]:
    """Mean supervised loss and the predicted mixtures (normalised units) over a loader."""
    net.eval()
    total, count = 0.0, 0
    parts: dict[str, list[np.ndarray]] = {"alpha": [], "mu": [], "sigma": [], "flux": [], "truncated": []}
    with torch.inference_mode():
        for batch in loader:
            batch = _to(batch, device)
            out = _forward(net, batch, device, amp)
            loss = supervised_loss(out, batch["flux"], batch["truncated"], batch["weight"])
            total += float(loss.detach()) * batch["flux"].shape[0]
            count += batch["flux"].shape[0]
            parts["alpha"].append(out.log_alpha.exp().double().cpu().numpy())
            parts["mu"].append(out.mu.double().cpu().numpy())
            parts["sigma"].append(out.sigma.double().cpu().numpy())
            parts["flux"].append(batch["flux"].double().cpu().numpy())
            parts["truncated"].append(batch["truncated"].cpu().numpy())
    result: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    result["loss"] = total / max(count, 1)
    return result


def _science_metrics(pred: dict[str, Any], flux_scale: float, i_auto: np.ndarray) -> dict[str, Any]:
    from lumos_ops.lumos.mixture import mixture_mean, mixture_variance, pit

    alpha = pred["alpha"] / pred["alpha"].sum(axis=1, keepdims=True)
    mu, sigma = pred["mu"] * flux_scale, pred["sigma"] * flux_scale
    truth = pred["flux"] * flux_scale
    mean = mixture_mean(alpha, mu, sigma, pred["truncated"])
    std = np.sqrt(mixture_variance(alpha, mu, sigma, pred["truncated"]))
    pits = pit(truth, alpha, mu, sigma, pred["truncated"])
    ok = truth > 0
    rel = (mean[ok] - truth[ok]) / truth[ok]
    q16, q50, q84 = np.percentile(rel, [16, 50, 84]) if rel.size else (np.nan,) * 3
    z = (mean - truth) / std
    out: dict[str, Any] = {
        "n": int(truth.size),
        "bias": float(q50),
        "sigma68": float(0.5 * (q84 - q16)),
        "coverage68": float(np.mean(np.abs(z) < 1.0)) if z.size else float("nan"),
        "pit_hist": np.histogram(pits, bins=10, range=(0, 1))[0].tolist(),
    }
    bins = []
    for lo, hi in ((17.0, 20.0), (20.0, 21.0), (21.0, 22.0), (22.0, 22.5), (22.5, 23.5)):
        sel = (i_auto[ok] >= lo) & (i_auto[ok] < hi)
        if sel.sum() >= 5:
            p16, p50, p84 = np.percentile(rel[sel], [16, 50, 84])
            bins.append({"i_min": lo, "i_max": hi, "n": int(sel.sum()), "bias": float(p50), "sigma68": float(0.5 * (p84 - p16))})
    out["by_imag"] = bins
    return out


def _norm_sample(ids: np.ndarray, config: TrainConfig) -> np.ndarray:
    """The (sorted) stamps, at most ``config.norm_sample`` of ``ids`` drawn by ``config.seed``, that
    set the normalisation."""
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(ids, size=min(config.norm_sample, ids.size), replace=False))


def _estimate_norm(ts, ids: np.ndarray, config: TrainConfig) -> Normalization:
    from lumos_ops.lumos.preprocess import estimate_normalization, with_imag_range

    sample = _norm_sample(ids, config)
    images = ts.images(sample)
    meta = ts.meta
    norm = estimate_normalization(
        images[:, 0],
        images[:, 1],
        meta["i_auto"].to_numpy(np.float64)[sample],
        meta["flux"].to_numpy(np.float64)[sample],
        ccd_shape=config.ccd_shape,
        stamp_background_method=config.stamp_background or "median",
    )
    return with_imag_range(norm, meta["i_auto"].to_numpy(np.float64)[ids])


def _load_initial(net: LumosNet, loaded: Any, config: TrainConfig) -> Normalization:
    """Copy the weights of ``loaded`` (the ``LoadedModel`` of ``config.init_model``) into ``net``;
    returns its normalisation. A ``"matched_filter"`` network may start a ``"matched_filter_residual"``
    one of otherwise the same configuration (:func:`~lumos_ops.lumos.model.widened_state`)."""
    mine, theirs = net.config, loaded.net.config
    widen = (theirs.anchor, mine.anchor) == ("matched_filter", "matched_filter_residual") and (
        dataclasses.replace(theirs, anchor=mine.anchor, inputs=mine.inputs) == mine)
    if loaded.arch != config.arch and not widen:
        raise LumosValueError(f"{loaded.path}: init_model arch {loaded.arch!r} differs from {config.arch!r}; set arch to it")
    if mine.n_band_epochs != theirs.n_band_epochs:
        raise LumosValueError(
            f"{loaded.path}: init_model n_band_epochs {theirs.n_band_epochs!r} differs from this training's "
            f"{mine.n_band_epochs!r} (the training set's bands x epochs must match it)"
        )
    state = loaded.net.state_dict()
    net.load_state_dict(widened_state(state, net) if widen else state)
    return loaded.normalization


def _initial_provenance(loaded: Any) -> dict[str, Any]:
    """Path and weights SHA-256 of the checkpoint (``LoadedModel``) a fine-tuning started from."""
    return {"path": str(Path(loaded.path).resolve()), "sha256": loaded.sha256}


def train(
    training_set: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
    survey=None,
) -> dict[str, Any]:
    """Train a network on a TEAHUPOO set and write checkpoints and metrics under ``out_dir``.

    Parameters
    ----------
    training_set : path-like
        Directory written by ``lumos simulate training-set`` (splits ``train`` and ``val`` used).
    out_dir : path-like
        Output directory (created).
    config : TrainConfig
    resume : bool, keyword-only
        Continue from ``out_dir/train_state.pt``.
    metadata : dict, keyword-only
        Extra provenance stored in the checkpoint (e.g. the data recipe).
    survey : lumos_ops.survey.Survey or None, keyword-only
        Band order of the embedding when the training set's manifest does not record one
        (:func:`training_set_bands`); None: the PAUS narrow bands over two epochs.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.data import StampBatches

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    log.info("training %s on %s (%s)", config.arch, training_set, "resume" if resume else "new run")
    device = select_device(config.device)
    ts = TrainingSet(training_set)
    train_ids = ts.indices("train")[: config.max_train]
    val_ids = ts.indices("val")[: config.max_val]
    if train_ids.size == 0 or val_ids.size == 0:
        raise LumosValueError(f"{training_set}: need stamps in both the train and val splits (got {train_ids.size}, {val_ids.size})")

    embedding = training_set_bands(ts, survey)
    state_path = out / "train_state.pt"
    torch.manual_seed(config.seed)
    initial = None
    if config.init_model is not None:
        from lumos_ops.lumos.checkpoint import load_checkpoint

        initial = load_checkpoint(config.init_model, device="cpu")
    # a fine-tuning reads none of the scalar inputs its initial network does not read
    read = SCALAR_NAMES if initial is None else initial.net.config.inputs
    net = get_model(config.arch, inputs=tuple(v for v in SCALAR_NAMES if v not in config.drop_inputs and v in read),
                    n_band_epochs=len(embedding["bands"]) * embedding["n_epochs"]).to(device)
    if config.train_only is not None:
        children = dict(net.named_children())
        if children.get(config.train_only) is None:
            raise LumosValueError(f"train_only {config.train_only!r} is not a part of arch {config.arch!r}; "
                                  f"choose one of {sorted(k for k, v in children.items() if v is not None)}")
        for name, parameter in net.named_parameters():
            parameter.requires_grad_(name.startswith(config.train_only + "."))
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best = math.inf
    if resume:
        if not state_path.is_file():
            raise InputFileError(f"{state_path}: nothing to resume from; run without --resume")
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state["train_config"]["arch"] != config.arch:
            raise LumosValueError(f"{state_path}: saved arch {state['train_config']['arch']!r} differs from {config.arch!r}")
        norm = Normalization.from_dict(state["normalization"])
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        history = list(state["history"])
        best = float(state["best_val_loss"])
    elif initial is not None:
        from lumos_ops.lumos.preprocess import with_imag_range

        norm = with_imag_range(_load_initial(net, initial, config), ts.meta["i_auto"].to_numpy(np.float64)[train_ids])
        if config.stamp_background not in (None, norm.stamp_background):
            from lumos_ops.lumos.preprocess import with_stamp_background

            norm = with_stamp_background(norm, ts.images(_norm_sample(train_ids, config))[:, 0], config.stamp_background)
    else:
        norm = _estimate_norm(ts, train_ids, config)

    net.bind_normalization(norm)
    prior = ts.flux_prior
    truncation_imag = math.inf if prior is not None else config.truncation_imag
    train_data = StampBatches(ts, train_ids, norm, truncation_imag=truncation_imag, flux_prior=prior,
                              balanced_weights=config.balanced_weights)
    val_data = StampBatches(ts, val_ids, norm, truncation_imag=truncation_imag, flux_prior=prior,
                            balanced_weights=config.balanced_weights)
    val_loader = _loader(val_data, config.batch_size, shuffle_seed=None)
    amp = config.amp and device.type == "cuda"
    base_meta = {
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
        "training_set": str(Path(training_set).resolve()),
        "training_set_seed": ts.manifest.get("seed"),
        "n_train": int(train_ids.size),
        "n_val": int(val_ids.size),
        "trained_band_epochs": sorted(int(v) for v in np.unique(ts.meta["band_epoch"].to_numpy(np.int64)[train_ids])),
        **psf_range_metadata(ts, train_ids),
        **embedding,
        "truncation_imag": truncation_imag if math.isfinite(truncation_imag) else None,
        "flux_prior": prior.to_dict() if prior is not None else {"kind": "population", "training_set": str(Path(training_set).resolve())},
        "device": str(device),
        "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_version": str(torch.__version__),
        "code_version": __version__,
        **({"init_model": _initial_provenance(initial)} if initial is not None else {}),
        **(metadata or {}),
    }

    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        net.train()
        frozen_bn = epoch >= config.epochs - config.frozen_bn_epochs or config.train_only is not None
        if frozen_bn:
            freeze_batchnorm(net)
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loader = _loader(train_data, config.batch_size, shuffle_seed=config.seed * 100_003 + epoch)
        iterator = loader
        bar = None
        if config.progress:
            from tqdm.auto import tqdm

            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
            iterator = bar
        total, count = 0.0, 0
        for batch in iterator:
            batch = _to(batch, device)
            optimizer.zero_grad(set_to_none=True)
            out_params = _forward(net, batch, device, amp)
            loss = supervised_loss(out_params, batch["flux"], batch["truncated"], batch["weight"])
            if not torch.isfinite(loss.detach()):
                raise LumosValueError(f"epoch {epoch + 1}: the training loss is not finite; lower the learning rate")
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch["flux"].shape[0]
            count += batch["flux"].shape[0]
            if bar is not None:
                bar.set_postfix(loss=f"{total / count:.4f}")
        if bar is not None:
            bar.close()
        scheduler.step()
        val = evaluate_split(net, val_loader, device, amp=amp)
        record = {
            "epoch": epoch + 1,
            "train_loss": total / max(count, 1),
            "val_loss": val["loss"],
            "lr": lr,
            "frozen_bn": frozen_bn,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        log.info("epoch %d/%d train %.4f val %.4f (%.1f s)", epoch + 1, config.epochs, record["train_loss"], record["val_loss"], record["seconds"])
        if val["loss"] < best:
            best = val["loss"]
            save_checkpoint(out / "model.pt", net, arch=config.arch, normalization=norm,
                            metadata={**base_meta, "epoch": epoch + 1, "val_loss": best, "history": history})
        state = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_val_loss": best,
            "normalization": norm.to_dict(),
            "train_config": base_meta["train_config"],
        }
        tmp = state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, state_path)

    from lumos_ops.lumos.checkpoint import load_checkpoint

    best_model = load_checkpoint(out / "model.pt", device=device)
    val = evaluate_split(best_model.net, val_loader, device, amp=amp)
    metrics = {
        "val_loss": val["loss"],
        "epochs": config.epochs,
        "best_epoch": best_model.metadata.get("epoch"),
        "train_seconds_this_run": time.perf_counter() - started,
        "history": history,
        "validation": _science_metrics(val, norm.flux_scale, ts.meta["i_auto"].to_numpy(np.float64)[val_ids]),
        "model_sha256": best_model.sha256,
        **{k: v for k, v in base_meta.items() if k != "train_config"},
        "train_config": base_meta["train_config"],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics


def psf_range_metadata(ts: TrainingSet, ids: np.ndarray) -> dict[str, Any]:
    """``{"psf_fwhm_px_range": [lo, hi]}`` of the training stamps ``ids`` (pixels; empty when the set
    records no PSF FWHM or pixel scale): what ``LoadedModel.trained_psf_fwhm_px`` reads."""
    from lumos_ops.lumos.checkpoint import psf_fwhm_px_range

    scale = ts.manifest.get("pixel_scale")
    if "psf_fwhm" not in ts.meta or not scale:
        return {}
    span = psf_fwhm_px_range(ts.meta["psf_fwhm"].to_numpy(np.float64)[ids], float(scale))
    return {} if span is None else {"psf_fwhm_px_range": span}
