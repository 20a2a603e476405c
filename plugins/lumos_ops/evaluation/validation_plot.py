"""``validation.png`` of ``lumos validate``: PIT, coverage, D width, deblending bias and scatter, SNR.

One function per panel of the 2 x 3 figure; each takes the report section it draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_validation"]


def plot_validation(path: Path, *, pits: dict[str, dict[str, Any]], coverage: list[float], binning: str,
                    pairs: dict[str, Any] | None, deblend: dict[str, Any] | None,
                    deblend_other: dict[str, Any] | None, snr: dict[str, Any], n: int) -> None:
    """Draw the six panels and write them to ``path`` (PNG, 100 dpi).

    Parameters
    ----------
    path : Path
        Output PNG.
    pits : dict of str to dict
        Per model label, :func:`~lumos_ops.evaluation.calibration.pit_summary` (``hist``, ``ks_distance``).
    coverage : list of float
        68 % coverage per bin of :data:`~lumos_ops.evaluation.calibration.COVERAGE_MAG_EDGES`.
    binning : str
        Name of the magnitude of those bins (axis label).
    pairs : dict or None, keyword-only
        :func:`~lumos_ops.evaluation.pair_width.pair_d_width` result, None when no survey was given.
    deblend, deblend_other : dict or None, keyword-only
        The scored deblending test and the others by name (:mod:`~lumos_ops.evaluation.deblend_report`).
    snr : dict, keyword-only
        :func:`~lumos_ops.evaluation.snr.snr_by_band` result.
    n : int, keyword-only
        Number of stamps (title).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.4))
    _pit_panel(axes[0, 0], pits, n)
    _coverage_panel(axes[0, 1], coverage, binning)
    _d_width_panel(axes[0, 2], pairs)
    if deblend:
        _deblend_bias_panel(axes[1, 0], deblend, deblend_other)
        _deblend_scatter_panel(axes[1, 1], deblend)
    else:
        for ax in (axes[1, 0], axes[1, 1]):
            _empty(ax, "deblending test not run")
    _snr_panel(axes[1, 2], snr)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()


def _pit_panel(ax: Any, pits: dict[str, dict[str, Any]], n: int) -> None:
    centres = (np.arange(20) + 0.5) / 20
    for label, summary in pits.items():
        hist = np.asarray(summary["hist"], dtype=np.float64)
        ax.step(centres, hist / max(hist.mean(), 1e-12), where="mid", label=f"{label} (KS {summary['ks_distance']:.3f})")
    ax.axhline(1.0, color="grey", ls=":")
    ax.legend(fontsize=8)
    ax.set(xlabel="PIT (eq. 13)", ylabel="density / uniform", title=f"PIT, {n} stamps (Fig. 6)")


def _coverage_panel(ax: Any, coverage: list[float], binning: str) -> None:
    from lumos_ops.evaluation.calibration import COVERAGE_MAG_EDGES

    bins = np.array(COVERAGE_MAG_EDGES)
    ax.plot(0.5 * (bins[:-1] + bins[1:]), coverage, "o-")
    ax.axhspan(0.65, 0.71, color="green", alpha=0.15)
    ax.set(xlabel=binning, ylabel="fraction in 16-84 % interval", title="68 % coverage", ylim=(0, 1))


def _d_width_panel(ax: Any, pairs: dict[str, Any] | None) -> None:
    if pairs is None or not pairs["by_imag"]:
        _empty(ax, "no survey pairs given")
        return
    x = [0.5 * (b["mag_lo"] + b["mag_hi"]) for b in pairs["by_imag"]]
    ax.plot(x, [b["sigma68_D"] for b in pairs["by_imag"]], "o-")
    ax.axhline(1.0, color="grey", ls=":")
    ax.set(xlabel="i_auto", ylabel="sigma68[D] (eq. 19)", title=f"D width, {pairs['n_pairs']} pairs (Fig. 12)")


def _by_distance(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Bin centres (px) and ``key`` values (NaN where None) of a by-distance table."""
    return ([0.5 * (r["d_lo"] + r["d_hi"]) for r in rows], [np.nan if r[key] is None else r[key] for r in rows])


def _deblend_bias_panel(ax: Any, deblend: dict[str, Any], deblend_other: dict[str, Any] | None) -> None:
    for name, rows in deblend["by_distance"].items():
        ax.plot(*_by_distance(rows, "bias"), "o-", label=name)
    for name, other in (deblend_other or {}).items():
        ax.plot(*_by_distance(other["by_distance"].get("lumos", []), "bias"), "o:", label=f"lumos, {name} targets")
    ax.plot(*_by_distance(deblend["excess_by_distance"].get("lumos", []), "bias"), "k--",
            label="lumos: caused by the neighbour")
    ax.axhspan(-0.1, 0.1, color="green", alpha=0.12)
    ax.axvline(5.0, color="grey", ls=":")
    ax.legend(fontsize=8)
    ax.set(xlabel="neighbour distance (px)", ylabel="bias (f - f0) / f0",
           title=f"i=22 target ({deblend['target_fluxes']} fluxes), i=20 neighbour, {deblend['n_stamps']} stamps")


def _deblend_scatter_panel(ax: Any, deblend: dict[str, Any]) -> None:
    for name, rows in deblend["by_distance"].items():
        ax.plot(*_by_distance(rows, "sigma68"), "o-", label=name)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set(xlabel="neighbour distance (px)", ylabel="sigma68", title="deblending scatter")


def _snr_panel(ax: Any, snr: dict[str, Any]) -> None:
    bands = list(snr)
    methods = [m for m in ("lumos", "aperture", "optimal") if bands and m in snr[bands[0]]]
    for k, name in enumerate(methods):
        values = [snr[b][name]["snr_empirical"] or np.nan for b in bands]
        ax.bar(np.arange(len(bands)) + (k - 1) * 0.27, values, width=0.27, label=name)
    ax.set_xticks(np.arange(len(bands)), bands, rotation=45, fontsize=8)
    ax.legend(fontsize=8)
    ax.set(ylabel="median f0 / sigma68(f - f0)", title="SNR per band")
