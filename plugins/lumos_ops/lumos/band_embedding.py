"""A model's band x camera-epoch embedding rebuilt for another survey's bands.

A LUMOS network tells its bands apart by one learnt embedding row per band x camera epoch. To
adapt a model to a survey whose bands differ (e.g. SDSS g r i from a PAUS narrow-band model),
:func:`survey_embedding` builds a copy of the network with one row per band and epoch of the
target survey, row ``band index + n_bands x epoch``, each initialised from the base model's
*trained* row whose band is nearest in central wavelength (same epoch, or the base model's last
epoch when it has fewer), and returns the checkpoint metadata that records the new band list
(``bands``, ``n_epochs``, ``band_wavelengths_nm``).

A base checkpoint without ``bands`` metadata embeds the 40 PAUS narrow bands over two epochs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from lumos_ops.constants import N_EPOCHS, NB_BANDS, band_centre_nm
from lumos_ops.exceptions import LumosValueError

__all__ = ["model_bands", "survey_embedding"]


def model_bands(metadata: dict[str, Any]) -> tuple[tuple[str, ...], int, dict[str, float]]:
    """Bands (embedding order), camera epochs and band wavelengths (nm) of a checkpoint's metadata."""
    bands = tuple(str(b) for b in metadata.get("bands") or NB_BANDS)
    n_epochs = int(metadata.get("n_epochs") or N_EPOCHS)
    recorded = metadata.get("band_wavelengths_nm") or {}
    wavelengths = {b: float(recorded[b]) if b in recorded else band_centre_nm(b) for b in bands
                   if b in recorded or b in NB_BANDS}
    return bands, n_epochs, wavelengths


def survey_embedding(net, metadata: dict[str, Any], survey, *, trained_rows=None):
    """A copy of ``net`` whose embedding has one row per band x epoch of ``survey``.

    Parameters
    ----------
    net : LumosNet
        The base network (left unchanged).
    metadata : dict
        Its checkpoint metadata (``bands``, ``n_epochs``, ``band_wavelengths_nm``; PAUS when absent).
    survey : lumos_ops.survey.Survey
        Target survey: the bands a new model embeds (``embedding_bands``) with their central
        wavelengths (nm), camera epochs; rows ``survey.embedding_row(band, epoch)``.
    trained_rows : iterable of int, optional
        Base rows that were trained (``LoadedModel.trained_band_epochs``); only those are copied
        when any band has one. None: every row counts as trained.

    Returns
    -------
    (LumosNet, dict)
        The new network and the metadata entries to record: ``bands``, ``n_epochs``,
        ``band_wavelengths_nm`` and ``embedding_init`` (``"band@epoch" -> "base band@epoch"``).

    Raises
    ------
    LumosValueError
        The base model has no band with a known wavelength.
    """
    from lumos_ops.lumos.model import LumosNet

    bands, n_epochs, wavelengths = model_bands(metadata)
    trained = None if trained_rows is None else {int(r) for r in trained_rows}
    if not wavelengths:
        raise LumosValueError("the base model records no band wavelengths (metadata band_wavelengths_nm); "
                              "its embedding rows cannot be matched to the survey's bands")
    targets = [(name, survey.band(name).wavelength_nm) for name in survey.embedding_bands]
    rows = len(targets) * survey.n_epochs
    new = LumosNet(dataclasses.replace(net.config, n_band_epochs=rows))
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("embedding.")}
    new.load_state_dict(state, strict=False)
    old = net.embedding.weight.detach()
    init: dict[str, str] = {}
    weight = torch.empty((rows, old.shape[1]), dtype=old.dtype)
    for epoch in range(survey.n_epochs):
        base_epoch = min(epoch, n_epochs - 1)
        for i, (name, wavelength) in enumerate(targets):

            def row(band: str, e: int = base_epoch) -> int:
                return bands.index(band) + len(bands) * e

            pool = [b for b in wavelengths if trained is None or row(b) in trained] or list(wavelengths)
            source = min(pool, key=lambda b: (abs(wavelengths[b] - wavelength), bands.index(b)))
            weight[i + len(targets) * epoch] = old[row(source)]
            init[f"{name}@{epoch}"] = f"{source}@{base_epoch}"
    with torch.no_grad():
        new.embedding.weight.copy_(weight)
    new.to(next(net.parameters()).device)
    return new, {"bands": [name for name, _ in targets], "n_epochs": survey.n_epochs,
                 "band_wavelengths_nm": dict(targets), "embedding_init": init}
