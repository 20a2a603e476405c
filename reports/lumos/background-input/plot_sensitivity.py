"""Figure: LUMOS pull sigma68, 68 % coverage and bias at fixed true flux against the background input.

Usage::

    python plot_sensitivity.py BASE.json CANDIDATE.json OUT.png

(the JSON files of ``background_sensitivity.py``; the real frames' stamp backgrounds under
``lumos inject``'s gain mapping, from BASE.json, are marked as vertical lines).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = (("pull_sigma68", "pull sigma68"), ("coverage68", "68 % coverage"), ("bias", "bias (f - f0) / f0"))


def _curves(result: dict) -> tuple[list[float], dict[str, list[list[float]]], list[str]]:
    levels = sorted((r for r in result["runs"].values() if r["b_e_per_s"] is not None), key=lambda r: r["b_e_per_s"])
    labels = [f"{row['lo']:g}-{row['hi']:g}" for row in levels[0]["bins"] if row["lo"] is not None]
    out = {m: [[r["bins"][i][m] for r in levels] for i in range(len(labels))] for m, _ in METRICS}
    return [r["b_e_per_s"] for r in levels], out, labels


def main(base: str, candidate: str, out: str) -> None:
    runs = {"v11": json.loads(Path(base).read_text()), "candidate": json.loads(Path(candidate).read_text())}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for (name, result), style in zip(runs.items(), ("-o", "--s")):
        b, curves, labels = _curves(result)
        for ax, (metric, title) in zip(axes, METRICS):
            for i, label in enumerate(labels):
                ax.plot(b, curves[metric][i], style, color=f"C{i}", ms=3, label=f"{name}, f0 {label} e-/s" if name == "v11" else None)
            ax.set_title(title)
            ax.set_xlabel("background input b (e-/s per pixel)")
    for frame in runs["v11"]["real_frames"]:
        for ax in axes:
            ax.axvline(frame["background_e_per_s_median"], color="grey", lw=0.8, ls=":")
    axes[0].axhline(1.0, color="k", lw=0.6)
    axes[1].axhline(0.68, color="k", lw=0.6)
    axes[2].axhline(0.0, color="k", lw=0.6)
    axes[2].set_ylim(-0.5, 2.5)
    axes[0].legend(fontsize=7)
    fig.suptitle("Held-out simulator stamps, pixels unchanged, background input replaced "
                 "(solid: v11, dashed: candidate without the input; dotted: the real frames' b)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
