"""Offsets of LUMOS models on fresh stamps of the default recipe's own draw, at fixed true flux.

The draw is ``lumos_ops.evaluation.recipe_draw`` (a fresh exposure of every fifth band of the recipe's
survey, epoch 0, TEAHUPOO seed 1234, the recipe's own settings), the one the model card's calibration
table and ``tests/models/test_shipped_calibration.py`` score. Per bin of true flux (e-/s): the median
relative bias of the likelihood median, its median offset in units of the likelihood's 68 % half-width,
the coverage of [q16, q84] and the median true SNR (true flux over that half-width).

Usage::

    .venv/bin/python reports/lumos/scratch-v14/recipe_draw_offsets.py OUT.json WORKDIR N_STAMPS MODEL [MODEL ...]
"""

import json
import sys

import numpy as np

from lumos_ops.evaluation.recipe_draw import recipe_draw

BINS = ((3.0, 10.0), (10.0, 30.0), (30.0, 100.0), (100.0, 300.0), (300.0, 1200.0))


def main(out: str, work: str, n_stamps: str, models: list[str]) -> None:
    result = {"n_stamps": int(n_stamps), "bins_e_per_s": BINS, "models": {}}
    for model in models:
        draw = recipe_draw(work, int(n_stamps), model=model)
        truth, median, lo, hi = draw.truth, draw.median, draw.q16, draw.q84
        half = 0.5 * (hi - lo)
        rows = []
        for low, high in BINS:
            sel = (truth >= low) & (truth < high)
            rows.append({
                "lo": low, "hi": high, "n": int(sel.sum()),
                "bias": float(np.median((median[sel] - truth[sel]) / truth[sel])),
                "offset_sigma": float(np.median((median[sel] - truth[sel]) / half[sel])),
                "coverage68": float(np.mean((truth[sel] >= lo[sel]) & (truth[sel] <= hi[sel]))),
                "median_true_snr": float(np.median(truth[sel] / half[sel])),
            })
            print(f"{model} {low:g}-{high:g}: " + " ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()
                                                           if k not in ("lo", "hi")), flush=True)
        result["models"][model] = rows
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
