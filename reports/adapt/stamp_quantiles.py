"""The 16th, 50th and 84th percentiles (e-/s) of a LUMOS model's PDFs on TEAHUPOO stamps, as the
check scripts of this folder score them: the network on the stored stamps, its mixture scaled by
``flux_scale``, under the training set's reference prior and without the magnitude truncation."""
import math

import numpy as np
import torch

from lumos_ops.lumos.data import StampBatches
from lumos_ops.lumos.mixture import mixture_quantile


def stamp_quantiles(model, ts, ids: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """``(len(ids), 3)`` array of the q16, median and q84 (e-/s) of ``model``'s PDFs on stamps ``ids`` of ``ts``."""
    data = StampBatches(ts, ids, model.normalization, truncation_imag=math.inf, flux_prior=ts.flux_prior)
    scale = model.normalization.flux_scale
    parts = []
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            b = data[list(range(s, min(s + batch, len(ids))))]
            o = model.net(b['images'], b['scalars'], b['band_epoch'])
            parts.append(mixture_quantile([0.16, 0.5, 0.84], o.log_alpha.exp().numpy().astype(float),
                                          (o.mu * scale).numpy().astype(float), (o.sigma * scale).numpy().astype(float),
                                          None))
    return np.concatenate(parts)
