"""Make a trained LUMOS network blind to some of its scalar inputs, without retraining.

A network multiplies the scalar inputs its ``ModelConfig.inputs`` does not list by zero
(``LumosNet.scalar_mask``). The scalars are standardised with the training set's mean and standard
deviation (``lumos_ops.lumos.preprocess.prepare_inputs``), so a dropped input reads as its training
mean, whatever the exposure says. The weights are unchanged.

The use is the ``background`` input, the stamp's sky level (e-/s per pixel). On the simulator the sky
sets the pixel noise, so a network learns to read the noise from it. On real frames it does not: a
sky-subtracted frame has a level near 0, a raw one any level its gain gives. A network that reads it
returns a flux that moves when a constant is added to the frame (docs/likelihood.md §10).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import SCALAR_NAMES

__all__ = ["drop_inputs"]


def drop_inputs(model: str | os.PathLike[str], names: Sequence[str], out: str | os.PathLike[str], *,
                reason: str = "") -> tuple[str, ...]:
    """Write ``model`` to ``out`` with the scalar inputs ``names`` dropped; returns the inputs it keeps.

    The weights, normalisation and metadata are carried over (the weights' SHA-256 is unchanged).
    The metadata gains ``dropped_inputs`` (every input the network no longer reads, with those it
    never read) and ``derived_from`` (the source file's SHA-256, ``model`` as given, the inputs dropped here
    and ``reason``).

    Raises
    ------
    LumosValueError
        A name outside :data:`~lumos_ops.lumos.config.SCALAR_NAMES`, or none of ``names`` is read
        by the network (nothing to drop).
    """
    import dataclasses

    from lumos_ops.lumos.checkpoint import load_checkpoint, resolve_model_path, save_checkpoint
    from lumos_ops.lumos.model import LumosNet

    names = tuple(dict.fromkeys(str(v) for v in names))
    unknown = [v for v in names if v not in SCALAR_NAMES]
    if unknown or not names:
        raise LumosValueError(f"drop inputs: give some of {SCALAR_NAMES}, got {list(names)}")
    path = resolve_model_path(model)
    loaded = load_checkpoint(path, device="cpu")
    config = loaded.net.config
    present = [v for v in names if v in config.inputs]
    if not present:
        raise LumosValueError(f"{path}: the network does not read {list(names)} (its inputs: {list(config.inputs)}); "
                              "nothing to drop")
    keep = tuple(v for v in config.inputs if v not in names)
    net = LumosNet(dataclasses.replace(config, inputs=keep))
    net.load_state_dict(loaded.net.state_dict())
    net.bind_normalization(loaded.normalization)
    metadata = {
        **loaded.metadata,
        "dropped_inputs": [v for v in SCALAR_NAMES if v not in keep],
        "derived_from": {"file_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(), "model": os.fspath(model),
                         "inputs_dropped": present, "reason": reason},
    }
    save_checkpoint(out, net, arch=loaded.arch, normalization=loaded.normalization, metadata=metadata)
    return keep
