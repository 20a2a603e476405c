"""Torch datasets streaming TEAHUPOO shards (memory-mapped) as normalised batches."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from lumos_ops.constants import BRIGHT_LOSS_IMAG
from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import Normalization
from lumos_ops.lumos.preprocess import pixel_flux_estimate, prepare_inputs, stamp_background

__all__ = ["StampBatches", "REQUIRED_META"]

REQUIRED_META: tuple[str, ...] = ("band_epoch", "ccd_x", "ccd_y", "i_auto", "flux")
"""Columns of ``meta.parquet`` the training needs."""


class StampBatches(Dataset):
    """Batches of a TEAHUPOO set: ``dataset[list_of_stamp_ids]`` returns one normalised batch.

    Use with ``DataLoader(dataset, batch_size=None, sampler=BatchSampler(...))`` so that each
    sampled list of ids is read from the memory-mapped shards in one call.

    Parameters
    ----------
    training_set : lumos_ops.sim.TrainingSet
    indices : ndarray of int, shape (m,)
        Stamp ids of this split.
    norm : Normalization
    truncation_imag : float, keyword-only
        Rows with ``i_auto >= truncation_imag`` use eq. (10) (paper: 20.5).
    flux_prior : ReferencePrior or None, keyword-only
        When the fluxes were drawn from a reference prior, each item also carries its importance
        weights ``weight`` (B,) float32 (``ReferencePrior.importance_weights``); else all ones.
    balanced_weights : bool, keyword-only
        With ``flux_prior``: weights ``ReferencePrior.balanced_weights`` instead, from each stamp's
        matched-filter flux (:func:`~lumos_ops.lumos.preprocess.pixel_flux_estimate` against its
        median background, computed once per stamp). Same minimiser; the faint stamps keep their
        share of the loss.

    Returns (per item)
    ------------------
    dict with ``images`` (B, 2, S, S) float32, ``scalars`` (B, 4) float32, ``band_epoch`` (B,)
    int64, ``flux`` (B,) float32 in units of ``norm.flux_scale``, ``truncated`` (B,) bool, ``weight``
    (B,) float32.
    """

    def __init__(self, training_set, indices: np.ndarray, norm: Normalization, *, truncation_imag: float = BRIGHT_LOSS_IMAG,
                 flux_prior=None, balanced_weights: bool = False) -> None:
        missing = [c for c in REQUIRED_META if c not in training_set.meta.columns]
        if missing:
            raise LumosValueError(f"{training_set.path}/meta.parquet lacks column(s) {missing}")
        self.training_set = training_set
        self.indices = np.asarray(indices, dtype=np.int64)
        self.norm = norm
        meta = training_set.meta
        self._band_epoch = meta["band_epoch"].to_numpy(np.int64)
        self._x = meta["ccd_x"].to_numpy(np.float64)
        self._y = meta["ccd_y"].to_numpy(np.float64)
        self._imag = meta["i_auto"].to_numpy(np.float64)
        self._flux = meta["flux"].to_numpy(np.float64)
        self._truncated = self._imag >= truncation_imag
        self._weight = (np.ones_like(self._flux) if flux_prior is None
                        else flux_prior.importance_weights(self._flux)).astype(np.float32)
        self._background = np.full(len(self._flux), np.nan) if norm.stamp_background != "median" else None
        self._prior = flux_prior if balanced_weights else None
        self._estimate = np.full(len(self._flux), np.nan) if self._prior is not None else None

    def __len__(self) -> int:
        return int(self.indices.size)

    def _stamp_backgrounds(self, ids: np.ndarray, cutouts: np.ndarray) -> np.ndarray | None:
        """Backgrounds (e-/s per pixel) of stamps ``ids`` (cutouts (k, S, S)) by ``norm.stamp_background``,
        each computed once and kept (the masked annulus detects sources in every stamp: 0.6 ms a stamp,
        every epoch otherwise); None for ``"median"``, which :func:`prepare_inputs` computes faster."""
        if self._background is None:
            return None
        todo = np.isnan(self._background[ids])
        if todo.any():
            self._background[ids[todo]] = stamp_background(cutouts[todo], self.norm.stamp_background)
        return self._background[ids]

    def _weights(self, ids: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Loss weights of stamps ``ids`` (images (k, 2, S, S)): the importance weights, or the
        balanced ones from each stamp's matched-filter flux (computed once and kept)."""
        if self._prior is None:
            return self._weight[ids]
        todo = np.isnan(self._estimate[ids])
        if todo.any():
            cutouts = images[todo, 0]
            self._estimate[ids[todo]] = pixel_flux_estimate(cutouts, images[todo, 1], stamp_background(cutouts, "median"))
        return self._prior.balanced_weights(self._flux[ids], self._estimate[ids]).astype(np.float32)

    def __getitem__(self, positions) -> dict[str, torch.Tensor]:
        ids = self.indices[np.atleast_1d(np.asarray(positions, dtype=np.int64))]
        images = self.training_set.images(ids)
        inputs = prepare_inputs(
            images[:, 0], images[:, 1], self._imag[ids], self._x[ids], self._y[ids], self._band_epoch[ids], self.norm,
            background=self._stamp_backgrounds(ids, images[:, 0]),
        )
        return {
            "images": torch.from_numpy(inputs.images),
            "scalars": torch.from_numpy(inputs.scalars),
            "band_epoch": torch.from_numpy(inputs.band_epoch),
            "flux": torch.from_numpy((self._flux[ids] / self.norm.flux_scale).astype(np.float32)),
            "truncated": torch.from_numpy(self._truncated[ids]),
            "weight": torch.from_numpy(self._weights(ids, images)),
        }
