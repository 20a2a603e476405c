"""Photo-z validation report: metrics JSON and a PNG (z_phot vs zspec, dz histogram, metrics table)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.exceptions import CatalogError, LumosValueError
from lumos_ops.io.atomic import replace_atomically, write_text_atomic
from lumos_ops.photoz.metrics import (
    DEFAULT_IMAG_BINS,
    PAUS_OUTLIER_THRESHOLD,
    binned_photoz_metrics,
    delta_z,
)
from lumos_ops.photoz.outputs import check_output_folder
from lumos_ops.photoz.tables import read_photoz_table, read_redshift_catalog

__all__ = ["REPORT_JSON", "REPORT_PNG", "validate_photoz", "plot_photoz", "json_safe"]

REPORT_JSON: str = "photoz_metrics.json"
REPORT_PNG: str = "photoz_validation.png"


def json_safe(value: Any) -> Any:
    """A table cell as JSON: numpy scalars as Python numbers, NaN and infinities as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def validate_photoz(
    catalog: str | os.PathLike[str],
    photoz: str | os.PathLike[str],
    report_dir: str | os.PathLike[str],
    *,
    z_column: str = "z_mode",
    quality_column: str = "qz",
    larger_is_better: bool = False,
    best_fraction: float = 0.5,
    outlier_threshold: float = PAUS_OUTLIER_THRESHOLD,
    bins: Sequence[float] = DEFAULT_IMAG_BINS,
) -> dict[str, Any]:
    """Compare a photo-z table with the catalogue's spectroscopic redshifts.

    Parameters
    ----------
    catalog : path
        ``ref_id``, ``zspec`` and ``i_auto`` (e.g. the simulator's ``catalog.parquet``).
    photoz : path
        Table written by ``lumos photoz run``.
    report_dir : path
        Receives :data:`REPORT_JSON` and :data:`REPORT_PNG` (each written atomically; the folder is
        checked before anything is read and created if needed).
    z_column, quality_column : str, keyword-only
        Photo-z point estimate and quality proxy columns (defaults ``z_mode`` and ``qz``).
    larger_is_better : bool, keyword-only
        Direction of the quality proxy (False for ``qz``, True for ``odds``).
    best_fraction : float, keyword-only
        Fraction of the best sources also reported, in (0, 1] (default 0.5, as in the paper).
    outlier_threshold : float, keyword-only
        ``|dz|`` above which a source is an outlier (default 0.02).
    bins : sequence of float, keyword-only
        i_auto bin edges (AB mag).

    Returns
    -------
    dict
        The JSON report: ``n_photoz``, ``n_matched``, settings and ``metrics`` (list of rows of
        :func:`~lumos_ops.photoz.metrics.binned_photoz_metrics`).
    """
    if not (math.isfinite(best_fraction) and 0.0 < best_fraction <= 1.0):
        raise LumosValueError(f"--best-fraction {best_fraction!r}: must lie in (0, 1] (a fraction of the sources)")
    out = check_output_folder(report_dir, "--report", (REPORT_JSON, REPORT_PNG))
    joined, n_photoz = _matched_sources(catalog, photoz, z_column, quality_column)
    table = binned_photoz_metrics(
        joined[z_column].to_numpy(),
        joined["zspec"].to_numpy(),
        joined["i_auto"].to_numpy(),
        bins=bins,
        quality=joined[quality_column].to_numpy(),
        fractions=(1.0, best_fraction) if best_fraction < 1.0 else (1.0,),
        larger_is_better=larger_is_better,
        outlier_threshold=outlier_threshold,
    )
    report = {
        "catalog": os.fspath(catalog),
        "photoz": os.fspath(photoz),
        "z_column": z_column,
        "quality_column": quality_column,
        "best_fraction": best_fraction,
        "outlier_threshold": outlier_threshold,
        "n_photoz": n_photoz,
        "n_matched": int(len(joined)),
        "metrics": [{k: json_safe(v) for k, v in row.items()} for row in table.to_dict(orient="records")],
    }
    out.mkdir(parents=True, exist_ok=True)
    plot_photoz(joined[z_column].to_numpy(), joined["zspec"].to_numpy(), table, out / REPORT_PNG,
                outlier_threshold=outlier_threshold)
    write_text_atomic(out / REPORT_JSON, json.dumps(report, indent=2) + "\n")
    return report


def _matched_sources(
    catalog: str | os.PathLike[str], photoz: str | os.PathLike[str], z_column: str, quality_column: str
) -> tuple[pd.DataFrame, int]:
    """Photo-z rows joined with the catalogue (``zspec``, ``i_auto``) where ``zspec`` is finite,
    and the number of photo-z rows.

    Raises
    ------
    CatalogError
        No ``i_auto`` column, no ``ref_id`` in common, or no finite ``zspec`` among the common sources.
    """
    cat = read_redshift_catalog(catalog)
    if "i_auto" not in cat.columns:
        raise CatalogError(f"{os.fspath(catalog)}: missing column i_auto (needed for the per-magnitude metrics)")
    pz = read_photoz_table(photoz, columns=(z_column, quality_column))
    joined = pz.join(cat, how="inner")
    if joined.empty:
        raise CatalogError(f"{os.fspath(photoz)}: no ref_id in common with {os.fspath(catalog)}")
    finite = joined[np.isfinite(joined["zspec"])]
    if finite.empty:
        raise CatalogError(
            f"{os.fspath(catalog)}: none of the {len(joined)} sources in common with {os.fspath(photoz)} has a finite "
            "zspec; give a catalogue with spectroscopic redshifts"
        )
    return finite, int(len(pz))


def plot_photoz(
    z_phot: np.ndarray,
    z_spec: np.ndarray,
    metrics: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    outlier_threshold: float = PAUS_OUTLIER_THRESHOLD,
) -> None:
    """Three panels: z_phot vs zspec, histogram of dz, and the metrics table; saved as PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dz = delta_z(z_phot, z_spec)
    ok = np.isfinite(dz)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1, 1, 1.5]})
    ax = axes[0]
    ax.scatter(z_spec[ok], z_phot[ok], s=3, alpha=0.5, color="k", rasterized=True)
    top = float(np.nanmax([z_spec[ok].max(initial=1.0), z_phot[ok].max(initial=1.0)]))
    line = np.array([0.0, top])
    ax.plot(line, line, color="C3", lw=1)
    for sign in (-1, 1):
        ax.plot(line, line + sign * outlier_threshold * (1 + line), color="C3", lw=0.8, ls="--")
    ax.set(xlabel="z_spec", ylabel="z_phot", xlim=(0, top), ylim=(0, top), title="photo-z vs spec-z")
    ax = axes[1]
    lim = max(5 * outlier_threshold, 0.05)
    ax.hist(np.clip(dz[ok], -lim, lim), bins=80, range=(-lim, lim), color="0.3")
    for sign in (-1, 1):
        ax.axvline(sign * outlier_threshold, color="C3", ls="--", lw=0.8)
    ax.set(xlabel="(z_phot - z_spec) / (1 + z_spec)", ylabel="sources", title="dz (clipped at the edges)")
    ax = axes[2]
    ax.axis("off")
    show = metrics[["fraction", "bin", "n", "sigma68", "nmad", "outlier_fraction", "bias"]]
    cells = [
        [f"{r.fraction:.2f}", r.bin, str(r.n), f"{r.sigma68:.4f}", f"{r.nmad:.4f}", f"{r.outlier_fraction:.3f}", f"{r.bias:+.4f}"]
        for r in show.itertuples()
    ]
    tab = ax.table(cellText=cells, colLabels=["frac", "i_auto", "n", "sigma68", "NMAD", "outl.", "bias"], loc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1.0, 1.1)
    fig.tight_layout()
    try:
        replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
