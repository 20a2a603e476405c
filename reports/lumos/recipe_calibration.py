"""Fixed-truth calibration of the shipped default on fresh stamps drawn as its own recipe draws.

Usage: ``.venv/bin/python reports/lumos/recipe_calibration.py [N_STAMPS] [WORKDIR]`` (default 4,000
stamps in a temporary directory). A fresh exposure (seed 1234 draw) of every fifth band of the
recipe's survey, epoch 0, as ``tests/lumos/test_shipped_calibration.py`` does; prints the model
card's table by true flux (e-/s): coverage of [q16, q84], pull sigma68 and median relative bias,
plus the importance-weighted coverage and mean PIT under the flat reference prior.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from lumos_ops.evaluation.recipe_draw import recipe_draw


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 4000
    work = Path(argv[2]) if len(argv) > 2 else Path(tempfile.mkdtemp(prefix="recipe-calibration-"))
    draw = recipe_draw(work, n)
    truth, mid = draw.truth, draw.median
    inside = (truth >= draw.q16) & (truth <= draw.q84)
    pull = (mid - truth) / (0.5 * (draw.q84 - draw.q16))
    print(f"model {draw.loaded.path}; {len(truth)} stamps, bands {', '.join(draw.bands)}, epoch 0")
    print("| true flux (e⁻/s) | n | coverage of [q16, q84] | pull σ68 | median relative bias |")
    print("|---|---|---|---|---|")
    for low, high in ((3.0, 10.0), (10.0, 30.0), (30.0, 100.0), (100.0, 300.0), (300.0, 1200.0)):
        sel = (truth >= low) & (truth < high)
        width = 0.5 * np.subtract(*np.percentile(pull[sel], [84, 16]))
        bias = np.median((mid[sel] - truth[sel]) / truth[sel])
        print(f"| {low:g}–{high:g} | {sel.sum()} | {inside[sel].mean():.2f} | {width:.2f} | {bias:+.3f} |")
    w = draw.loaded.flux_prior.importance_weights(truth)
    w = w / w.sum()
    print(f"under the flat reference prior (importance-weighted, n_eff {1 / np.sum(w * w):.0f}): "
          f"coverage {np.sum(w * inside):.3f}, mean PIT {np.sum(w * draw.cdf_at_truth):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
