"""Read a TEAHUPOO training set written by :func:`~lumos_ops.sim.teahupoo.generate_training_set`.

The layout (``lumos-teahupoo`` v1, ``docs/ARCHITECTURE.md``) is a data contract like an exposure's:
the simulator writes it, training, transfer learning and evaluation read it through
:class:`TrainingSet`, which is why it lives in ``io/`` and not in ``sim/``.

Shards are opened with ``numpy.load(..., mmap_mode="r")``: nothing is read until pixels are
indexed, so a data loader can stream sets far larger than memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.exceptions import InputFileError, LumosValueError

__all__ = ["TrainingSet", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "lumos-teahupoo"
"""``format`` of a training set's ``manifest.json``."""
FORMAT_VERSION = 1
"""``version`` of the layout this reader understands."""


class TrainingSet:
    """A sharded stamp set on disk.

    Parameters
    ----------
    path : path-like
        Directory holding ``manifest.json``, ``meta.parquet`` and ``shards/``.

    Attributes
    ----------
    path : pathlib.Path
    manifest : dict
        The parsed ``manifest.json``.
    meta : pandas.DataFrame
        One row per stamp in shard order (``stamp_id`` = position).

    Examples
    --------
    >>> ts = TrainingSet("teahupoo/")                       # doctest: +SKIP
    >>> batch = ts.images(ts.indices("train")[:500])       # (500, 2, 60, 60) float32
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise InputFileError(f"{manifest_path}: no training-set manifest; generate one with `lumos simulate training-set`")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise InputFileError(f"{manifest_path}: not valid JSON ({exc})") from None
        if self.manifest.get("format") != FORMAT_NAME or self.manifest.get("version") != FORMAT_VERSION:
            raise InputFileError(
                f"{manifest_path}: format {self.manifest.get('format')!r} v{self.manifest.get('version')} is not "
                f"{FORMAT_NAME!r} v{FORMAT_VERSION}"
            )
        meta_path = self.path / "meta.parquet"
        if not meta_path.is_file():
            raise InputFileError(f"{meta_path}: missing; the training set is incomplete, regenerate it")
        try:
            self.meta: pd.DataFrame = pd.read_parquet(meta_path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise InputFileError(f"{meta_path}: not a readable Parquet table ({exc}); regenerate the set") from None
        counts = [int(s["n"]) for s in self.manifest["shards"]]
        if sum(counts) != len(self.meta) or len(self.meta) != int(self.manifest["n_stamps"]):
            raise InputFileError(
                f"{self.path}: manifest lists {sum(counts)} stamps in shards, n_stamps={self.manifest['n_stamps']}, "
                f"meta.parquet has {len(self.meta)} rows; regenerate the set"
            )
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._shards: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.meta)

    def __getstate__(self) -> dict[str, Any]:
        # Data-loader workers re-open the shards lazily instead of receiving copies of them.
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state

    def __repr__(self) -> str:
        return f"TrainingSet({str(self.path)!r}, n_stamps={len(self)}, stamp_size={self.stamp_size})"

    @property
    def stamp_size(self) -> int:
        """Stamp side S (pixels)."""
        return int(self.manifest["stamp_size"])

    @property
    def flux_prior(self):
        """The :class:`~lumos_ops.flux_prior.ReferencePrior` the fluxes were drawn from, or None when
        they follow a population (catalogue or band distribution)."""
        from lumos_ops.flux_prior import REFERENCE_PRIOR, ReferencePrior

        config = self.manifest.get("config", {})
        if config.get("flux_source") != "reference_prior":
            return None
        return REFERENCE_PRIOR if config.get("flux_prior") is None else ReferencePrior.from_dict(config["flux_prior"])

    @property
    def n_shards(self) -> int:
        """Number of shard files."""
        return len(self.manifest["shards"])

    def shard(self, index: int) -> np.ndarray:
        """Memory-mapped shard ``index``: float32 array of shape (n, 2, S, S), read-only."""
        if not 0 <= index < self.n_shards:
            raise LumosValueError(f"shard index {index} out of range 0..{self.n_shards - 1}")
        if index not in self._shards:
            entry = self.manifest["shards"][index]
            file = self.path / entry["file"]
            if not file.is_file():
                raise InputFileError(f"{file}: shard missing; the training set is incomplete, regenerate it")
            try:
                array = np.load(file, mmap_mode="r")
            except (OSError, EOFError, ValueError) as exc:
                raise InputFileError(f"{file}: not a readable .npy shard ({exc})") from None
            expected = (int(entry["n"]), 2, self.stamp_size, self.stamp_size)
            if array.shape != expected or array.dtype != np.float32:
                raise InputFileError(f"{file}: shape {array.shape} {array.dtype}, expected {expected} float32")
            self._shards[index] = array
        return self._shards[index]

    def images(self, indices: np.ndarray | list[int] | slice) -> np.ndarray:
        """Stamps by ``stamp_id``.

        Parameters
        ----------
        indices : array_like of int or slice
            Stamp ids (any order, repeats allowed).

        Returns
        -------
        ndarray, shape (k, 2, S, S), float32
            Channel 0: background cutout plus noisy galaxy (e-/s per pixel); channel 1: the
            unit-flux PSF-convolved model.
        """
        if isinstance(indices, slice):
            indices = np.arange(len(self))[indices]
        ids = np.asarray(indices, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise LumosValueError(f"stamp ids must lie in 0..{len(self) - 1}")
        out = np.empty((ids.size, 2, self.stamp_size, self.stamp_size), dtype=np.float32)
        shard_of = np.searchsorted(self._offsets, ids, side="right") - 1
        for index in np.unique(shard_of):
            where = np.flatnonzero(shard_of == index)
            rows = ids[where] - self._offsets[index]
            order = np.argsort(rows, kind="stable")
            out[where[order]] = self.shard(int(index))[rows[order]]
        return out

    def indices(self, split: str) -> np.ndarray:
        """Stamp ids of one split (``"train"``, ``"val"`` or ``"test"``), int64."""
        if split not in ("train", "val", "test"):
            raise LumosValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return np.flatnonzero(self.meta["split"].to_numpy() == split).astype(np.int64)

    def iter_shards(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """Yield ``(meta rows, memory-mapped images)`` shard by shard, in order."""
        for index in range(self.n_shards):
            lo, hi = int(self._offsets[index]), int(self._offsets[index + 1])
            yield self.meta.iloc[lo:hi], self.shard(index)
