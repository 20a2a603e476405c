"""LUMOS run on the stamps of a TEAHUPOO set: one row of mixture columns per stamp."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError

__all__ = ["lumos_on_training_set", "model_band_rows"]

log = logging.getLogger(__name__)

_CHUNK = 8192
"""Stamps read from disk at once."""


def model_band_rows(loaded: Any, meta: pd.DataFrame, *, where: str) -> np.ndarray:
    """The model's band x epoch embedding row of every stamp, from the stamps' ``band`` and ``epoch``.

    A set's own ``band_epoch`` counts its survey's bands, which need not be the model's (an SDSS set
    scored by a PAUS model, say): the rows are looked up by band name. Stamps of a band or epoch the
    model lacks are refused (one error naming them and the model's bands); rows the model was never
    trained on are logged as a warning (``lumos measure`` flags them UNTRAINED_BAND).

    Parameters
    ----------
    loaded : LoadedModel
        The model (``lumos_ops.lumos.checkpoint.load_checkpoint``).
    meta : DataFrame
        The stamps' rows of ``meta.parquet`` (``band``, ``epoch``).
    where : str
        The set, for messages.
    """
    pairs = meta[["band", "epoch"]].astype({"band": str, "epoch": np.int64})
    lookup = {(b, e): loaded.band_epoch_row(b, e) for b, e in pairs.drop_duplicates().itertuples(index=False)}
    missing = sorted(f"{b} epoch {e}" for (b, e), row in lookup.items() if row is None)
    if missing:
        raise LumosValueError(f"{where}: the model has no embedding row for {', '.join(missing)} (its bands: "
                              f"{' '.join(loaded.bands)}, {loaded.n_epochs} epoch(s)); score it on stamps of its own bands")
    trained = loaded.trained_band_epochs
    if trained is not None:
        untrained = sorted(f"{b} epoch {e}" for (b, e), row in lookup.items() if row not in trained)
        if untrained:
            log.warning("%s: the model was never trained on %s; its scores there measure an untrained embedding",
                        where, ", ".join(untrained))
    return np.fromiter((lookup[(b, e)] for b, e in pairs.itertuples(index=False)), dtype=np.int64, count=len(pairs))


def lumos_on_training_set(loaded: Any, ts: Any, ids: np.ndarray, *, batch_size: int = 1024) -> pd.DataFrame:
    """LUMOS result columns (see ``inference.mixture_table``) for stamps ``ids`` of a TEAHUPOO set.

    Stamps larger than the model's input are cropped to their central ``stamp_size`` pixels.

    Parameters
    ----------
    loaded : LoadedModel
        The model (``lumos_ops.lumos.checkpoint.load_checkpoint``).
    ts : TrainingSet
        The stamps (channel 0 data, channel 1 unit-flux model, e-/s) and their metadata.
    ids : ndarray of int, shape (n,)
        Stamp indices into ``ts``.
    batch_size : int, keyword-only
        Stamps per network batch.

    Returns
    -------
    DataFrame
        ``n`` rows in the order of ``ids``, the columns of ``mixture_table`` (``flux``, ``flux_err``,
        ``mean``, ``median``, ``mode``... in e-/s; ``alpha_k``, ``mu_k``, ``sigma_k``, ``truncated``).
    """
    from lumos_ops.lumos.inference import mixture_table, predict_mixtures
    from lumos_ops.lumos.preprocess import prepare_inputs

    size = loaded.net.config.stamp_size
    if ts.stamp_size < size:
        raise LumosValueError(f"{ts.path}: stamps are {ts.stamp_size} px, the model needs >= {size} px")
    off = ts.stamp_size // 2 - size // 2
    meta = ts.meta.iloc[ids]
    band_rows = model_band_rows(loaded, meta, where=str(ts.path))
    parts = []
    for lo in range(0, ids.size, _CHUNK):
        chunk = ids[lo : lo + _CHUNK]
        rows = meta.iloc[lo : lo + chunk.size]
        images = ts.images(chunk)[:, :, off : off + size, off : off + size]
        i_auto = rows["i_auto"].to_numpy(np.float64)
        inputs = prepare_inputs(images[:, 0], images[:, 1], i_auto, rows["ccd_x"].to_numpy(), rows["ccd_y"].to_numpy(),
                                band_rows[lo : lo + chunk.size], loaded.normalization)
        mixtures = predict_mixtures(loaded, inputs, i_auto, batch_size=batch_size)
        parts.append(pd.DataFrame(mixture_table(mixtures, likelihood=loaded.is_likelihood)))
    return pd.concat(parts, ignore_index=True)
