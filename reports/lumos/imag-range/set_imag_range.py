"""Write a copy of a LUMOS checkpoint whose normalisation clips ``i_auto`` into its trained range.

Checkpoints trained before ``Normalization.imag_range`` existed do not record the range of their
training magnitudes. Clipping only changes inputs outside that range, so a checkpoint gets exactly
what a training with the field would have recorded when the range is that of its training split:
``--training-set DIR`` (a TEAHUPOO set: min and max of the train split's ``i_auto``) or ``--range
LOW HIGH`` (AB mag; e.g. the ``population_i_range`` of the recipe that drew the training
magnitudes). The weights, and so their SHA-256, are unchanged.

Usage::

    python reports/lumos/imag-range/set_imag_range.py --model IN.pt --out OUT.pt --range 17.5 23.0
    python reports/lumos/imag-range/set_imag_range.py --model IN.pt --out OUT.pt --training-set DIR
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint file or shipped name")
    parser.add_argument("--out", required=True, help="checkpoint to write (may be --model's file)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"), help="AB mag")
    source.add_argument("--training-set", help="the TEAHUPOO set the checkpoint was (last) trained on")
    args = parser.parse_args()
    loaded = load_checkpoint(args.model, device="cpu")
    if args.range:
        low, high = args.range
        note = f"range {low}-{high} mag given"
    else:
        from lumos_ops.io.training_set import TrainingSet

        ts = TrainingSet(args.training_set)
        i_auto = ts.meta["i_auto"].to_numpy(np.float64)[ts.indices("train")]
        low, high = float(i_auto.min()), float(i_auto.max())
        note = f"train split of {args.training_set}"
    norm = dataclasses.replace(loaded.normalization, imag_range=(low, high))
    metadata = {**loaded.metadata, "imag_range_source": note}
    sha = save_checkpoint(args.out, loaded.net, arch=loaded.arch, normalization=norm, metadata=metadata)
    assert sha == loaded.sha256, "the weights changed"
    print(f"{args.out}: imag_range {norm.imag_range} ({note}); weights SHA-256 {sha}")


if __name__ == "__main__":
    main()
