"""Write a copy of an anchored LUMOS checkpoint whose widths carry the parameter-free profile error.

Usage: .venv/bin/python reports/lumos/matched-filter/with_profile_error.py MODEL OUT.pt [--kind dilation]

The weights, normalisation and metadata are MODEL's; only ``ModelConfig.profile_error`` changes
(docs/likelihood.md §9), so the copy's means are exactly MODEL's and its widths get, in quadrature,
the profile error each stamp shows.
"""

from __future__ import annotations

import argparse
import dataclasses

from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
from lumos_ops.lumos.model import LumosNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint file or shipped-model name (an anchored network)")
    parser.add_argument("out", help="output checkpoint file")
    parser.add_argument("--kind", default="dilation", help="ModelConfig.profile_error (default: dilation)")
    args = parser.parse_args()
    loaded = load_checkpoint(args.model, device="cpu")
    net = LumosNet(dataclasses.replace(loaded.net.config, profile_error=args.kind))
    net.load_state_dict(loaded.net.state_dict())
    metadata = {**loaded.metadata, "profile_error_from": {"path": loaded.path, "sha256": loaded.sha256}}
    sha = save_checkpoint(args.out, net, arch=loaded.arch, normalization=loaded.normalization, metadata=metadata)
    print(f"{args.out}: {loaded.arch} with profile_error={args.kind!r}, weights sha256 {sha}")


if __name__ == "__main__":
    main()
