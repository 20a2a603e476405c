"""``lumos inject`` with LUMOS's background input held at one value (the pixels unchanged).

Usage::

    python fixed_background_inject.py B_E_PER_S [lumos inject arguments ...]

Every call of ``prepare_inputs`` gets its standardised background scalar replaced by that of
``B_E_PER_S`` (e-/s per pixel) under the model's normalisation; at the training mean the network
sees the background it sees on a typical simulated stamp, whatever the frame's sky level.
"""

from __future__ import annotations

import dataclasses
import sys

from lumos_ops.lumos import preprocess


def main(level: float, argv: list[str]) -> int:
    original = preprocess.prepare_inputs

    def fixed(*args, **kwargs):
        inputs = original(*args, **kwargs)
        norm = kwargs.get("norm", args[6] if len(args) > 6 else None)
        scalars = inputs.scalars.copy()
        scalars[:, 3] = (level - norm.background_mean) / norm.background_std
        return dataclasses.replace(inputs, scalars=scalars)

    preprocess.prepare_inputs = fixed
    from lumos_ops.cli import main as cli

    sys.argv = ["lumos", "inject", *argv]
    return cli()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), sys.argv[2:]))
