"""The plain-text table of a ``lumos bench methods`` report (``methods.json``)."""

from __future__ import annotations

from typing import Any

__all__ = ["format_table"]


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of a ``methods.json`` report: overall and per-bin bias / sigma68 per method."""
    metrics = report["metrics"]
    methods = list(metrics["overall"])
    lines = ["method      n       bias     sigma68   flagged  pull_s68  stamps/s"]
    for m in methods:
        o = metrics["overall"][m]
        rate = report["timing"].get(m, {}).get("stamps_per_second")
        lines.append(
            f"{m:<10} {o['n']:>6} {_fmt(o['bias']):>9} {_fmt(o['sigma68']):>9} {_num(report['flags'][m]):>9.3f} "
            f"{_num(report['pull_sigma68'][m]):>8.3f} {_num(rate):>9.0f}"
        )
    shared = report["timing"].get("background")
    if shared:
        lines.append(f"(the classical methods' shared annulus background, timed apart: {_num(shared['stamps_per_second']):.0f} stamps/s)")
    lines.append("")
    lines.append("i_auto bin     n     " + "  ".join(f"{m + ' bias':>13} {m + ' s68':>12}" for m in methods))
    bins = metrics["binned"][methods[0]]
    for k, row in enumerate(bins):
        cells = []
        for m in methods:
            b = metrics["binned"][m][k]
            cells.append(f"{_fmt(b['bias']):>13} {_fmt(b['sigma68']):>12}")
        lines.append(f"{row['mag_lo']:5.1f}-{row['mag_hi']:<5.1f} {row['n']:>6}  " + "  ".join(cells))
    by_band = report.get("overall_by_band") or {}
    if by_band:
        lines.append("")
        lines.append("band        n     " + "  ".join(f"{m + ' bias':>13} {m + ' s68':>12}" for m in methods))
        for band, per_method in by_band.items():
            cells = [f"{_fmt(per_method[m]['bias']):>13} {_fmt(per_method[m]['sigma68']):>12}" for m in methods]
            lines.append(f"{band:<8} {per_method[methods[0]]['n'] + per_method[methods[0]]['n_missing']:>6}  " + "  ".join(cells))
    render = report.get("render")
    if render:
        lines.append("")
        lines.append(
            f"renderer: {render['ours_per_second']:.0f} profiles/s vs GalSim {render['galsim_per_second']:.0f}/s "
            f"(x{render['speedup']:.1f}); L1 vs GalSim median {render['l1_median']:.2e}, max {render['l1_max']:.2e}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:+.4f}"
