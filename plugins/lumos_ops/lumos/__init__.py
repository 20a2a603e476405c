"""The LUMOS network (Cabayol et al. 2021, §4): a CNN + mixture density network for galaxy fluxes.

Submodules (import the one you need; importing this package does not import torch):

* :mod:`~lumos_ops.lumos.config` -- validated architecture and input-normalisation dataclasses;
* :mod:`~lumos_ops.lumos.model` -- the network and the model registry (``get_model``);
* :mod:`~lumos_ops.lumos.preprocess` -- stamps + catalogue values -> normalised network inputs;
* :mod:`~lumos_ops.lumos.losses` -- eqs. (8), (10), (11), (12);
* :mod:`~lumos_ops.lumos.mixture` -- statistics of Gaussian mixtures (eqs. 13-16, 19, 22);
* :mod:`~lumos_ops.lumos.coadd` -- co-adds of point estimates (eq. 21) and of PDFs;
* :mod:`~lumos_ops.lumos.checkpoint` -- versioned, verifiable checkpoints;
* :mod:`~lumos_ops.lumos.data`, :mod:`~lumos_ops.lumos.train`, :mod:`~lumos_ops.lumos.transfer`,
  :mod:`~lumos_ops.lumos.pairs` -- training on TEAHUPOO shards and unsupervised transfer learning
  on pairs of exposures of the same galaxy;
* :mod:`~lumos_ops.lumos.recipe` -- seeded end-to-end recipes (survey -> shards -> model);
* :mod:`~lumos_ops.lumos.inference`, :mod:`~lumos_ops.lumos.method` -- batched inference and the
  ``"lumos"`` photometry method.

The validation report (``lumos validate``) lives in :mod:`lumos_ops.evaluation`.
"""

__all__: list[str] = []
