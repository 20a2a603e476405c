"""Versioned, verifiable LUMOS checkpoints and the shipped models.

A checkpoint is a ``torch.save`` dict (loaded with ``weights_only=True``, so it can hold nothing
but tensors and plain Python values)::

    {"format": "lumos-model", "version": 1, "arch": name, "config": ModelConfig dict,
     "normalization": Normalization dict, "metadata": {...}, "code_version": "0.1.0",
     "sha256": hex digest of the weights, "state_dict": {...}}

The band x camera-epoch embedding is a property of the model: metadata ``"bands"`` (band names in
embedding order) and ``"n_epochs"`` give row ``bands.index(band) + len(bands) * epoch``
(:meth:`LoadedModel.band_epoch_row`); checkpoints without them embed the 40 PAUS narrow bands over
two camera epochs. Optional ``"band_wavelengths_nm"`` (band -> nm) lets a band the model does not
know borrow the row of the model band nearest in wavelength.

The SHA-256 covers every tensor of ``state_dict`` (name, dtype, shape and bytes, in name order)
and is verified on load. Checkpoints load on CPU or GPU whatever device saved them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lumos_ops import __version__
from lumos_ops.exceptions import LumosValueError, ModelError
from lumos_ops.lumos.config import ModelConfig, Normalization
from lumos_ops.lumos.model import LumosNet, anchor_constants_of
from lumos_ops.lumos.weights import MODELS_DIR, shipped_models

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODELS_DIR",
    "SHIPPED_MODELS",
    "LoadedModel",
    "weights_sha256",
    "psf_fwhm_px_range",
    "anchor_mismatch",
    "checkpoint_dict",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_model_path",
]

FORMAT_NAME = "lumos-model"
FORMAT_VERSION = 1
SHIPPED_MODELS: dict[str, str] = shipped_models()
"""Name -> file in :data:`MODELS_DIR`, from the table :data:`lumos_ops.lumos.weights.SHIPPED_WEIGHTS`;
``None`` (or ``"default"``) selects ``"default"``."""


@dataclasses.dataclass
class LoadedModel:
    """A network ready for inference with what is needed to use it.

    Attributes
    ----------
    net : LumosNet
        In eval mode, on ``device``.
    arch : str
        Registry name of the architecture.
    normalization : Normalization
    metadata : dict
        Training metadata (data recipe, seed, epochs, metrics, truncation magnitude...).
    sha256 : str
        Verified digest of the weights.
    path : str
        Where it was loaded from.
    device : torch.device
    """

    net: LumosNet
    arch: str
    normalization: Normalization
    metadata: dict[str, Any]
    sha256: str
    path: str
    device: torch.device

    @property
    def flux_prior(self):
        """The :class:`~lumos_ops.flux_prior.ReferencePrior` the network was trained under, or None
        for a network trained on a population prior (its PDFs are posteriors under that population)."""
        from lumos_ops.flux_prior import prior_from_metadata

        return prior_from_metadata(self.metadata)

    @property
    def is_likelihood(self) -> bool:
        """Whether the network's PDFs are normalised likelihoods (trained under a reference prior)."""
        return self.flux_prior is not None

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names in embedding order (metadata ``"bands"``; default the PAUS narrow bands)."""
        from lumos_ops.constants import NB_BANDS

        bands = self.metadata.get("bands")
        return NB_BANDS if bands is None else tuple(str(b) for b in bands)

    @property
    def n_epochs(self) -> int:
        """Camera epochs of the embedding (metadata ``"n_epochs"``; default 2)."""
        from lumos_ops.constants import N_EPOCHS

        value = self.metadata.get("n_epochs")
        return N_EPOCHS if value is None else int(value)

    def band_epoch_row(self, band: str, epoch: int) -> int | None:
        """Embedding row of ``band`` at camera ``epoch``; None when the model has no such band or epoch."""
        bands = self.bands
        if band not in bands or epoch not in range(self.n_epochs):
            return None
        return bands.index(band) + len(bands) * int(epoch)

    def band_wavelengths_nm(self) -> dict[str, float]:
        """Central wavelength (nm) of each model band that has one: metadata
        ``"band_wavelengths_nm"``, else the PAUS narrow-band centres."""
        from lumos_ops.constants import NB_BANDS, band_centre_nm

        recorded = self.metadata.get("band_wavelengths_nm") or {}
        out = {}
        for band in self.bands:
            if band in recorded:
                out[band] = float(recorded[band])
            elif band in NB_BANDS:
                out[band] = band_centre_nm(band)
        return out

    def nearest_band_epoch_row(self, wavelength_nm: float, epoch: int) -> int | None:
        """Row of the model band nearest to ``wavelength_nm`` (nm) at ``epoch`` (the model's last
        epoch if it has fewer); None when no model band has a known wavelength."""
        known = self.band_wavelengths_nm()
        if not known:
            return None
        band = min(known, key=lambda b: (abs(known[b] - wavelength_nm), self.bands.index(b)))
        return self.band_epoch_row(band, min(max(int(epoch), 0), self.n_epochs - 1))

    def exposure_row(self, band: str, epoch: int, wavelength_nm: float | None = None) -> tuple[int, bool]:
        """The embedding row to measure ``band`` at ``epoch`` with, and whether the model knows them.

        A band or epoch the model lacks borrows the row of the model band nearest to
        ``wavelength_nm`` (nm; the survey's band wavelength), else row 0, so that outputs stay
        finite; callers flag such targets UNTRAINED_BAND.
        """
        row = self.band_epoch_row(band, epoch)
        if row is not None:
            return row, True
        nearest = None if wavelength_nm is None else self.nearest_band_epoch_row(wavelength_nm, epoch)
        return (0 if nearest is None else nearest), False

    @property
    def trained_band_epochs(self) -> frozenset[int] | None:
        """Band x epoch embedding rows the network was trained on; None when the checkpoint cannot tell.

        Read from the metadata ``trained_band_epochs`` that :func:`lumos_ops.lumos.train.train`
        records (rows of :meth:`band_epoch_row`); for older checkpoints built by a recipe, every
        row of the recipe survey's bands and camera epochs. Rows never trained keep their random
        initial embedding.
        """
        rows = self.metadata.get("trained_band_epochs")
        if rows is not None:
            return frozenset(int(r) for r in rows)
        survey = (self.metadata.get("recipe") or {}).get("survey")
        if not survey or "bands" not in survey:
            return None
        epochs = range(int(survey.get("n_epochs", 2)))
        rows = (self.band_epoch_row(b, e) for b in survey["bands"] for e in epochs)
        return frozenset(r for r in rows if r is not None)

    @property
    def trained_psf_fwhm_px(self) -> tuple[float, float] | None:
        """PSF FWHM range (pixels) of the training stamps; None when the checkpoint cannot tell.

        Read from the metadata ``psf_fwhm_px_range`` that :func:`lumos_ops.lumos.train.train` and
        ``lumos adapt`` record (:func:`psf_fwhm_px_range`); for older checkpoints built by a recipe,
        the recipe survey's seeing range (arcsec; :data:`lumos_ops.constants.SEEING_RANGE` unless it
        sets one) over its pixel scale, unless ``lumos adapt`` trained it further on other exposures.
        The network reads its stamps in pixels: a PSF much narrower or wider than these, in pixels,
        is an input it never saw.
        """
        span = self.metadata.get("psf_fwhm_px_range")
        if span is not None:
            return float(span[0]), float(span[1])
        survey = (self.metadata.get("recipe") or {}).get("survey")
        if not survey or "adapt" in self.metadata:  # an adapted model was trained on other exposures
            return None
        from lumos_ops.constants import PIXEL_SCALE, SEEING_RANGE

        lo, hi = survey.get("psf_fwhm_range", SEEING_RANGE)
        scale = float(survey.get("pixel_scale", PIXEL_SCALE))
        return float(lo) / scale, float(hi) / scale


def psf_fwhm_px_range(psf_fwhm: np.ndarray, pixel_scale: float) -> list[float] | None:
    """The 0.5-99.5 % range of training stamps' PSF FWHM (arcsec) in pixels of ``pixel_scale``
    (arcsec / pixel), for the checkpoint metadata ``psf_fwhm_px_range``; None without finite values."""
    px = np.asarray(psf_fwhm, dtype=np.float64) / float(pixel_scale)
    px = px[np.isfinite(px) & (px > 0)]
    if px.size == 0:
        return None
    lo, hi = np.quantile(px, [0.005, 0.995])
    return [round(float(lo), 4), round(float(hi), 4)]


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict (names, dtypes, shapes and bytes in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """JSON round trip: only plain Python values survive (what ``weights_only`` loading accepts)."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "item"):
            return obj.item()
        if hasattr(obj, "tolist"):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def anchor_mismatch(net: LumosNet, norm: Normalization) -> str | None:
    """Why an anchored network's stored constants (``LumosNet.bind_normalization``) disagree with
    ``norm``, or None when they agree or the network is not anchored."""
    if not net.anchored:
        return None
    bound = tuple(float(v) for v in net.anchor_constants)
    expected = anchor_constants_of(norm)
    if all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(bound, expected)):
        return None
    return (f"the network's matched-filter constants {bound} do not match its normalisation's "
            f"(pixel_soft, pixel_scale x model_scale / flux_scale) = {expected}")


def checkpoint_dict(
    net: LumosNet, *, arch: str, normalization: Normalization, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The checkpoint dict of a network (weights moved to CPU).

    Raises
    ------
    LumosValueError
        An anchored network not bound to ``normalization`` (``LumosNet.bind_normalization``).
    """
    problem = anchor_mismatch(net, normalization)
    if problem:
        raise LumosValueError(f"{problem}; call net.bind_normalization(normalization) first")
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arch": arch,
        "config": net.config.to_dict(),
        "normalization": normalization.to_dict(),
        "metadata": _plain(dict(metadata or {})),
        "code_version": __version__,
        "sha256": weights_sha256(state),
        "state_dict": state,
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    net: LumosNet,
    *,
    arch: str,
    normalization: Normalization,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint atomically (temporary file + rename); returns the weights' SHA-256."""
    from lumos_ops.io.atomic import replace_atomically

    data = checkpoint_dict(net, arch=arch, normalization=normalization, metadata=metadata)
    replace_atomically(path, lambda tmp: torch.save(data, tmp))
    return str(data["sha256"])


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """Path of a checkpoint given a path, a shipped-model name or None (the default model)."""
    if model is None:
        model = "default"
    name = os.fspath(model)
    if name in SHIPPED_MODELS:
        path = MODELS_DIR / SHIPPED_MODELS[name]
        if not path.is_file():
            raise ModelError(f"shipped model {name!r} is missing ({path}); reinstall lumos-ops or pass a checkpoint path")
        return path
    path = Path(name)
    if not path.is_file():
        raise ModelError(
            f"{name}: no such checkpoint; give a file written by `lumos train` or one of {sorted(SHIPPED_MODELS)}"
        )
    return path


def load_checkpoint(
    model: str | os.PathLike[str] | None = None, *, device: str | torch.device | None = None
) -> LoadedModel:
    """Load and verify a checkpoint.

    Parameters
    ----------
    model : path-like, shipped-model name or None
        None loads the shipped default model.
    device : str or torch.device, keyword-only
        Default: CUDA when available, else CPU.

    Raises
    ------
    ModelError
        Missing or unreadable file, wrong format or version, or a SHA-256 mismatch.
    """
    path = resolve_model_path(model)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files
        raise ModelError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ModelError(f"{path}: not a LUMOS model checkpoint (format {data.get('format') if isinstance(data, dict) else None!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint version {data.get('version')} is not {FORMAT_VERSION}; retrain or convert it")
    state = data["state_dict"]
    digest = weights_sha256(state)
    if digest != data.get("sha256"):
        raise ModelError(f"{path}: SHA-256 of the weights {digest} does not match the recorded {data.get('sha256')}; the file is corrupt")
    try:
        config = ModelConfig.from_dict(data["config"])
        norm = Normalization.from_dict(data["normalization"])
        net = LumosNet(config)
        net.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: weights do not fit the recorded configuration ({exc})") from None
    problem = anchor_mismatch(net, norm)
    if problem:
        raise ModelError(f"{path}: {problem}; the checkpoint is inconsistent")
    loaded = LoadedModel(net=net, arch=str(data.get("arch", "")), normalization=norm,
                         metadata=dict(data.get("metadata", {})), sha256=digest, path=str(path), device=device)
    try:
        rows = len(loaded.bands) * loaded.n_epochs
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: metadata bands/n_epochs are invalid ({exc})") from None
    recorded = "bands" in loaded.metadata or "n_epochs" in loaded.metadata
    if recorded and rows != config.n_band_epochs:
        raise ModelError(
            f"{path}: metadata bands ({len(loaded.bands)}) x n_epochs ({loaded.n_epochs}) = {rows} embedding rows, "
            f"but the network has {config.n_band_epochs}; the checkpoint is inconsistent"
        )
    net.to(device).eval()
    return loaded
