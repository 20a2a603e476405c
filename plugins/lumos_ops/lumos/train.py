"""Supervised training of LUMOS on a TEAHUPOO training set (§4.4).

Adam + StepLR (paper: lr 1e-4 divided by 10 every 40 epochs, batch 500, 100 epochs), eq. (8) for
i_auto < 20.5 and eq. (10) fainter. The last ``frozen_bn_epochs`` epochs train with every BatchNorm
layer in eval mode (running statistics frozen, affine weights still learnt), so that the network
that is evaluated and shipped is the one that was optimised; see :class:`TrainConfig`.

Every epoch writes ``OUT/train_state.pt`` (model, optimizer, scheduler, epoch, history: each
epoch's losses, the learning rate it trained with and its seconds, and the settings that shape the
weights; ``--resume`` continues from it with those settings, only :data:`RUN_ONLY_SETTINGS` may change) and ``OUT/model.pt`` (the checkpoint of the epoch with the lowest
validation loss); the end writes ``OUT/metrics.json`` (atomically). Every input is checked before
``OUT`` is created; stamps larger than the network's are cropped to their centre (:class:`CentreCrop`).

On CPU the run is deterministic for a fixed seed (torch's CPU kernels are; one data-loading
process; weights initialised from ``torch.manual_seed(seed)``; epoch permutations drawn from the
seed and the epoch number, so a resumed run sees the same batches). On CUDA it uses bfloat16
autocast (no gradient scaler needed), losses in float32.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from lumos_ops.constants import BRIGHT_LOSS_IMAG, CCD_SHAPE, n_band_epochs
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.atomic import replace_atomically
from lumos_ops.lumos.checkpoint import save_checkpoint
from lumos_ops.lumos.config import SCALAR_NAMES, STAMP_BACKGROUNDS, Normalization
from lumos_ops.lumos.losses import supervised_loss
from lumos_ops.lumos.model import LumosNet, get_model, list_models, widened_state

if TYPE_CHECKING:
    from lumos_ops.io.training_set import TrainingSet

__all__ = ["TrainConfig", "train", "evaluate_split", "select_device", "infer_ccd_shape", "freeze_batchnorm",
           "training_set_bands", "psf_range_metadata", "TRAINING_SET_SURVEY", "CentreCrop", "centre_crop",
           "check_init_model", "output_dir", "write_json_atomic", "RUN_ONLY_SETTINGS"]

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
        Use at most this many stamps of the split (first ids; >= 1; None = all).
    norm_sample : int
        Training stamps used to estimate the normalisation.
    num_threads : int or None
        ``torch.set_num_threads`` on CPU (>= 1; None leaves torch's default).
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
        loss (docs/likelihood.md §15); False: ``importance_weights``. A training set whose fluxes
        follow a population (no reference prior) has no importance weights: :func:`train` refuses it.
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
        for name in ("max_train", "max_val", "num_threads"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise LumosValueError(f"{name} must be >= 1 (or unset), got {getattr(self, name)}")
        if len(self.ccd_shape) != 2 or min(self.ccd_shape) < 1:
            raise LumosValueError(f"ccd_shape must be two CCD sizes (rows, columns) >= 1 px, got {self.ccd_shape}")


def infer_ccd_shape(training_set: str | os.PathLike[str]) -> tuple[int, int]:
    """CCD shape (ny, nx) of a set's source exposures: the manifest's ``ccd_shape`` (recorded when
    the set was made), else the first source exposure's header, its path tried as written, then
    relative to the set's parent directory and to the set; when none can be read,
    :data:`lumos_ops.constants.CCD_SHAPE` is returned (and logged).
    """
    from lumos_ops.io.exposure import image_shape

    root = Path(training_set)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    if manifest.get("ccd_shape"):
        ny, nx = (int(v) for v in manifest["ccd_shape"])
        return ny, nx
    for entry in list(manifest.get("exposures", []))[:1]:
        for candidate in (Path(entry), root.parent / entry, root / entry):
            shape = image_shape(candidate) if candidate.is_file() else None
            if shape is not None:
                return shape
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


def _check_initial(net: LumosNet, loaded: Any, config: TrainConfig) -> bool:
    """Refuse the initial checkpoint ``loaded`` (``LoadedModel`` of ``config.init_model``) when ``net``
    cannot start from it (another architecture, other band x epoch rows); returns whether its weights
    are widened: a ``"matched_filter"`` network may start a ``"matched_filter_residual"`` one of
    otherwise the same configuration (:func:`~lumos_ops.lumos.model.widened_state`)."""
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
    return widen


def _load_initial(net: LumosNet, loaded: Any, config: TrainConfig) -> Normalization:
    """Copy the weights of ``loaded`` (the ``LoadedModel`` of ``config.init_model``) into ``net``
    (checked by :func:`_check_initial`); returns its normalisation."""
    state = loaded.net.state_dict()
    net.load_state_dict(widened_state(state, net) if _check_initial(net, loaded, config) else state)
    return loaded.normalization


def _network(config: TrainConfig, rows: int, initial: Any, device: torch.device) -> LumosNet:
    """The network ``config`` trains, with ``rows`` band x epoch rows, on ``device``.

    A fine-tuning (``initial``: the ``LoadedModel`` it starts from) reads none of the scalar inputs
    its initial network does not read; with ``config.train_only`` only that part's weights learn.
    """
    read = SCALAR_NAMES if initial is None else initial.net.config.inputs
    net = get_model(config.arch, inputs=tuple(v for v in SCALAR_NAMES if v not in config.drop_inputs and v in read),
                    n_band_epochs=rows).to(device)
    if config.train_only is not None:
        children = dict(net.named_children())
        if children.get(config.train_only) is None:
            raise LumosValueError(f"train_only {config.train_only!r} is not a part of arch {config.arch!r}; "
                                  f"choose one of {sorted(k for k, v in children.items() if v is not None)}")
        for name, parameter in net.named_parameters():
            parameter.requires_grad_(name.startswith(config.train_only + "."))
    return net


def check_init_model(config: TrainConfig, rows: int = n_band_epochs()) -> None:
    """Refuse ``config.init_model`` as :func:`train` would (architecture, band x epoch rows, the part
    ``train_only`` names) before any data is made for the training (``lumos train --recipe``).

    ``rows`` is the number of band x epoch rows of the training set's embedding (default: the 40
    PAUS narrow bands x 2 camera epochs, that of a recipe's training set). Nothing to check without
    ``init_model``.
    """
    if config.init_model is None:
        return
    from lumos_ops.lumos.checkpoint import load_checkpoint

    loaded = load_checkpoint(config.init_model, device="cpu")
    _check_initial(_network(config, rows, loaded, torch.device("cpu")), loaded, config)


def _initial_provenance(loaded: Any) -> dict[str, Any]:
    """Path and weights SHA-256 of the checkpoint (``LoadedModel``) a fine-tuning started from."""
    return {"path": str(Path(loaded.path).resolve()), "sha256": loaded.sha256}


class CentreCrop:
    """A training set seen through the central ``size`` x ``size`` pixels of its stamps.

    The crop keeps stamp pixels ``S//2 - size//2 : S//2 - size//2 + size`` (the convention of
    ``lumos validate``), so that stamp pixel ``S//2``, on which the simulator centres the target and
    its model, becomes ``size//2``, the centre of a ``size``-pixel stamp. Both channels are cropped
    alike: the cutout's pixels are those of a ``size``-pixel stamp, and the model channel, rendered with
    unit flux over the whole plane, loses the flux outside the crop as a ``size``-pixel model does; the
    scalar inputs (i_auto, CCD position) do not depend on the stamp. Every other attribute (``meta``,
    ``manifest``, ``path``, ``flux_prior``...) is the set's.

    Parameters
    ----------
    training_set : TrainingSet
        Stamps of side ``S >= size`` pixels.
    size : int
        Side of the cropped stamps (pixels).
    """

    def __init__(self, training_set: TrainingSet, size: int) -> None:
        self._set = training_set
        self.stamp_size = int(size)
        self._offset = training_set.stamp_size // 2 - self.stamp_size // 2

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_set":  # copy/pickle ask before _set exists
            raise AttributeError(name)
        return getattr(self._set, name)

    def images(self, indices: np.ndarray | list[int] | slice) -> np.ndarray:
        """Cropped stamps by ``stamp_id``: (k, 2, size, size) float32 (channel 0 e-/s per pixel, channel 1
        the unit-flux model; see ``TrainingSet.images``)."""
        lo, hi = self._offset, self._offset + self.stamp_size
        return np.ascontiguousarray(self._set.images(indices)[:, :, lo:hi, lo:hi])


def centre_crop(training_set: TrainingSet, size: int) -> TrainingSet | CentreCrop:
    """``training_set`` as a network of ``size``-pixel stamps reads it: as it is when its stamps have
    that side, their centre (:class:`CentreCrop`) when they are larger; smaller stamps are refused."""
    found = training_set.stamp_size
    if found < size:
        raise LumosValueError(f"{training_set.path}: stamps are {found} px, the network needs {size} px; generate the "
                              f"set with `lumos simulate training-set --size {size}` (larger stamps are cropped to their centre)")
    if found == size:
        return training_set
    log.info("%s: stamps are %d px; the network reads their central %d px", training_set.path, found, size)
    return CentreCrop(training_set, size)


def output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` (``--out``) as a path, not created; a path that exists and is not a directory is refused."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LumosValueError(f"--out {out}: exists and is not a directory; give a new or existing directory")
    return out


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON (numpy numbers as floats) to ``path`` with
    :func:`lumos_ops.io.atomic.write_text_atomic`: a reader finds the old file or the whole new one."""
    from lumos_ops.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(value, indent=2, default=float))


def _split_ids(ts: TrainingSet, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Stamp ids of the ``train`` and ``val`` splits, at most ``max_train`` and ``max_val`` (first ids)."""
    train_ids = ts.indices("train")[: config.max_train]
    val_ids = ts.indices("val")[: config.max_val]
    if train_ids.size == 0 or val_ids.size == 0:
        raise LumosValueError(f"{ts.path}: need stamps in both the train and val splits (got {train_ids.size}, {val_ids.size})")
    return train_ids, val_ids


def _check_balanced_weights(ts: TrainingSet, config: TrainConfig) -> None:
    """Refuse ``balanced_weights`` on a set without a reference prior: it would change nothing."""
    if config.balanced_weights and ts.flux_prior is None:
        source = ts.manifest.get("config", {}).get("flux_source", "a population")
        raise LumosValueError(f"{ts.path}: --balanced-weights weights the stamps of reference-prior training sets, and "
                              f"this set's fluxes follow {source!r}; train without --balanced-weights")


RUN_ONLY_SETTINGS: tuple[str, ...] = ("device", "num_threads", "progress", "epochs")
""":class:`TrainConfig` fields a resumed run may change: how it runs, not what its weights become
(``epochs`` may be raised to train longer)."""

_STATE_KEYS: tuple[str, ...] = ("model", "optimizer", "scheduler", "epoch", "history", "best_val_loss",
                                "normalization", "train_config")
"""Entries of ``train_state.pt`` that ``--resume`` reads."""


def _plain_config(config: TrainConfig) -> dict[str, Any]:
    """``config`` as a dict of JSON types (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def _run_settings(config: TrainConfig, ts: TrainingSet, embedding: dict[str, Any]) -> dict[str, Any]:
    """What shapes the weights of a run: the :class:`TrainConfig` fields but :data:`RUN_ONLY_SETTINGS`
    (``init_model`` as its weights' SHA-256), the training set (SHA-256 of its manifest: seed, size,
    configuration, shards) and the embedding's bands and epochs."""
    settings = {k: v for k, v in _plain_config(config).items() if k not in RUN_ONLY_SETTINGS}
    if config.init_model is not None:  # the weights, not a path that another folder or machine spells otherwise
        from lumos_ops.lumos.checkpoint import load_checkpoint

        settings["init_model"] = load_checkpoint(config.init_model, device="cpu").sha256
    settings["training_set_manifest_sha256"] = hashlib.sha256(json.dumps(ts.manifest, sort_keys=True).encode()).hexdigest()
    settings["bands"] = list(embedding["bands"])
    settings["n_epochs"] = int(embedding["n_epochs"])
    return settings


def _load_state(path: Path, device: torch.device) -> dict[str, Any]:
    """The training state ``path`` (``OUT/train_state.pt``) that ``--resume`` continues; a missing,
    truncated or foreign file is refused."""
    if not path.is_file():
        raise InputFileError(f"{path}: nothing to resume from; run without --resume")
    fix = "remove it to train from the start, or use a new --out"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise InputFileError(f"{path}: not a readable training state ({type(exc).__name__}); {fix}") from None
    missing = [k for k in _STATE_KEYS if k not in state] if isinstance(state, dict) else list(_STATE_KEYS)
    if missing:
        raise InputFileError(f"{path}: not a training state of lumos train (no {', '.join(missing)}); {fix}")
    return state


def _check_resume(path: Path, state: dict[str, Any], settings: dict[str, Any], config: TrainConfig,
                  training_set: str | os.PathLike[str]) -> None:
    """Refuse to resume the run saved in ``state`` with other ``settings`` (:func:`_run_settings`) or
    fewer epochs than it trained; log when it has trained ``config.epochs`` already."""
    saved = state.get("settings")
    if saved is None:  # written before the settings were recorded: compare its TrainConfig fields
        saved = {k: v for k, v in state["train_config"].items() if k not in RUN_ONLY_SETTINGS}
        keys = sorted(saved)
    else:
        keys = sorted(set(saved) | set(settings))
    changed = [k for k in keys if saved.get(k) != settings.get(k)]
    if changed:
        shown = "; ".join(
            f"training set {state.get('training_set', '?')} -> {Path(training_set).resolve()} (another manifest.json)"
            if k == "training_set_manifest_sha256" else f"{k} {saved.get(k)!r} -> {settings.get(k)!r}"
            for k in changed)
        raise LumosValueError(f"{path}: the saved run was trained with other settings ({shown}); resume with its "
                              "values, or use a new --out for a new run")
    done = int(state["epoch"])
    if config.epochs < done:
        raise LumosValueError(f"{path}: the saved run has trained {done} epochs, more than --epochs {config.epochs}; "
                              f"give --epochs {done} or more to resume it, or use a new --out")
    if config.epochs == done:
        log.info("%s: already trained %d epochs; nothing to do (raise --epochs to train longer)", path, done)


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

    Every input (training set, splits, initial model, resumed state, stamp size) is checked before
    ``out_dir`` is created. Stamps larger than the network's input are cropped to their centre
    (:class:`CentreCrop`).

    Parameters
    ----------
    training_set : path-like
        Directory written by ``lumos simulate training-set`` (splits ``train`` and ``val`` used).
    out_dir : path-like
        Output directory (created).
    config : TrainConfig
    resume : bool, keyword-only
        Continue from ``out_dir/train_state.pt``: its settings (:data:`RUN_ONLY_SETTINGS` aside) and
        training set must be ``config``'s, and ``config.epochs`` at least the epochs it trained (as
        many: nothing is trained, the metrics are written again).
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

    out = output_dir(out_dir)
    log.info("training %s on %s (%s)", config.arch, training_set, "resume" if resume else "new run")
    device = select_device(config.device)
    ts = TrainingSet(training_set)
    train_ids, val_ids = _split_ids(ts, config)
    _check_balanced_weights(ts, config)
    embedding = training_set_bands(ts, survey)
    settings = _run_settings(config, ts, embedding)
    state_path = out / "train_state.pt"
    saved = _load_state(state_path, device) if resume else None
    if saved is not None:
        _check_resume(state_path, saved, settings, config, training_set)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    initial = None
    if config.init_model is not None:
        from lumos_ops.lumos.checkpoint import load_checkpoint

        initial = load_checkpoint(config.init_model, device="cpu")
    net = _network(config, len(embedding["bands"]) * embedding["n_epochs"], initial, device)
    ts = centre_crop(ts, net.config.stamp_size)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best = math.inf
    if saved is not None:
        norm = Normalization.from_dict(saved["normalization"])
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch = int(saved["epoch"])
        history = list(saved["history"])
        best = float(saved["best_val_loss"])
    elif initial is not None:
        from lumos_ops.lumos.preprocess import with_imag_range

        norm = with_imag_range(_load_initial(net, initial, config), ts.meta["i_auto"].to_numpy(np.float64)[train_ids])
        if config.stamp_background not in (None, norm.stamp_background):
            from lumos_ops.lumos.preprocess import with_stamp_background

            norm = with_stamp_background(norm, ts.images(_norm_sample(train_ids, config))[:, 0], config.stamp_background)
    else:
        norm = _estimate_norm(ts, train_ids, config)
    out.mkdir(parents=True, exist_ok=True)

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
        "train_config": _plain_config(config),
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
            "settings": settings,
            "training_set": base_meta["training_set"],
        }
        replace_atomically(state_path, lambda tmp, state=state: torch.save(state, tmp))

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
    write_json_atomic(out / "metrics.json", metrics)
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
