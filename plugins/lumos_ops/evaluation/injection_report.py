"""Score an injection-recovery table (:func:`lumos_ops.evaluation.injection.run_injection`) at fixed truth.

Per population and method: bias, sigma68, pulls and 68 % coverage per bin of true SNR and of true
flux (per exposure); co-adds of N = 2, 5, 10 placements of each galaxy, every disjoint run of N of
its placements (LUMOS: product of
likelihoods, :func:`~lumos_ops.lumos.coadd.coadd_likelihoods`; classical: eq. 21) scored per bin of
the co-add's true SNR; for LUMOS the shared-error table of the rows
(:func:`~lumos_ops.lumos.shared_error.estimate_shared_error`, what ``lumos adapt`` records in its
candidate) and the same co-adds with that term, cross-fitted between two halves of the galaxies;
the width of the pair statistic D (eq. 19) of two placements; for LUMOS the PIT of its likelihood
made a posterior with the injected population as prior (the other galaxies' true fluxes; and,
``pit_population_prior_model``, with ``model_flux`` in place of the truth); and
the ratio of LUMOS's sigma68 to the optimal weighted sum's per true-SNR bin; per method the error
floor the rows were measured with and the one their bright rows ask for
(:mod:`lumos_ops.photometry.error_floor`); per method and bin of true SNR the share of the
pull variance that the placements of one galaxy share (:func:`shared_pull_bins`), which the
co-adds multiply, and the tails of the pulls with the co-add width they give independent exposures
(:func:`pull_tail_bins`); per population the mean faint pull of each method by the galaxy's size
(:func:`faint_pull_by_size`). :func:`targets` checks
the acceptance targets of likelihood photometry (docs/likelihood.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from lumos_ops.evaluation.fixed_truth import TRUE_FLUX_EDGES, TRUE_SNR_EDGES, fixed_truth_bins
from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import sigma68 as half_width68

__all__ = ["score_injection", "targets", "population_pit", "plot_injection", "json_clean", "domain_flag_shares", "DOMAIN_FLAGS",
           "COADD_N", "COADD_SNR_EDGES"]

COADD_N: tuple[int, ...] = (2, 5, 10)
COADD_SNR_EDGES: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 50.0, 1e6)


def _coadds(frame: pd.DataFrame, method: str, n: int, *, shared: bool = False,
            outlier_fraction: float = 0.0) -> dict[str, Any]:
    """Co-adds of ``n`` placements of each galaxy: every disjoint run of ``n`` of its placements
    (``place`` ``k n`` to ``(k + 1) n - 1``), so 10 placements make five 2-exposure co-adds, two
    5-exposure and one 10-exposure; bootstrap errors resample whole galaxies. The survey's error
    floor is counted once (rows' ``floor_rho`` for LUMOS, :func:`coadd_with_floor` for the others);
    ``shared``: LUMOS with each row's ``shared_rho`` (the shared-error term) where it is larger;
    ``outlier_fraction``: the LUMOS co-adds' prior probability of a bad exposure, as the nightly
    co-adds use it (``Survey.coadd_outlier_fraction``)."""
    from lumos_ops.lumos.coadd import coadd_likelihoods
    from lumos_ops.lumos.mixture_table import mixtures_from_table
    from lumos_ops.photometry.error_floor import coadd_with_floor, statistical_error

    sel = frame[np.isfinite(frame["flux"])].assign(run=frame["place"] // n)
    counts = sel.groupby(["galaxy", "run"])["place"].transform("size")
    sel = sel[counts == n].sort_values(["galaxy", "run", "place"])
    if sel.empty:
        return {"n": n, "n_sources": 0, "n_galaxies": 0, "by_true_snr": []}
    n_src = len(sel) // n
    galaxy = sel["galaxy"].to_numpy()[::n]
    truth = sel["true_flux"].to_numpy()[::n]
    snr = truth * np.sqrt((1.0 / sel["crb_err"].to_numpy() ** 2).reshape(n_src, n).sum(axis=1))
    if method == "lumos":
        mix = mixtures_from_table(sel)
        a, m, s = (x.reshape(n_src, n, -1) for x in (mix.alpha, mix.mu, mix.sigma))
        rho = np.zeros((n_src, n))
        if shared:
            rho = sel["shared_rho"].to_numpy(np.float64).reshape(n_src, n)
        if "floor_rho" in sel:
            rho = np.maximum(rho, np.nan_to_num(sel["floor_rho"].to_numpy(np.float64)).reshape(n_src, n))
        res = coadd_likelihoods(a, m, s, np.full((n_src, n), 31.4), truncated=mix.truncated.reshape(n_src, n),
                                rho=rho if np.any(rho > 0) else None, outlier_fraction=outlier_fraction)
        flux, err = res.stats["median"], res.stats["sigma68"]
        discounted = float(res.n_outliers.mean())
    else:
        flux, err = coadd_with_floor(sel["flux"].to_numpy().reshape(n_src, n),
                                     sel["flux_err"].to_numpy().reshape(n_src, n),
                                     statistical_error(sel).reshape(n_src, n))
    out = {"n": n, "n_sources": int(n_src), "n_galaxies": int(np.unique(galaxy).size),
           "by_true_snr": fixed_truth_bins(truth, flux, err, by=snr, edges=COADD_SNR_EDGES, n_boot=100, groups=galaxy)}
    if method == "lumos":
        out["discounted"] = discounted  # exposures per co-add more likely bad than good (outlier_fraction)
    if "model_flux" in sel:
        # the exposures' model-limited fluxes, averaged with the noise weights (1 / crb_err^2) that set the co-add's true SNR
        w = 1.0 / sel["crb_err"].to_numpy().reshape(n_src, n) ** 2
        model = (w * sel["model_flux"].to_numpy().reshape(n_src, n)).sum(axis=1) / w.sum(axis=1)
        out["by_true_snr_model"] = fixed_truth_bins(model, flux, err, by=snr, edges=COADD_SNR_EDGES, n_boot=100,
                                                    groups=galaxy)
    return out


def _shared_error(frame: pd.DataFrame, residual: np.ndarray | None, pooled: pd.DataFrame | None = None, *,
                  outlier_fraction: float = 0.0) -> dict[str, Any]:
    """The shared-error table of these rows (pairs of placements on different frames, split by the
    galaxies' median ``residual`` when given; what ``lumos adapt`` records) and the co-adds with
    it, cross-fitted: each half of the galaxies (by galaxy label parity) is co-added with the table
    measured on the other half, plus ``pooled`` (LUMOS rows of other galaxies that the recorded
    term also pools, e.g. another population, with their ``model_residual``)."""
    from lumos_ops.lumos.shared_error import estimate_shared_error

    if frame["place"].nunique() < 2:
        return {}
    from lumos_ops.photometry.error_floor import statistical_error

    columns = ["flux", "flux_err", "snr_err", "true_flux", "galaxy", "frame", "model_residual"]
    own = frame.assign(model_residual=np.nan if residual is None else residual, snr_err=statistical_error(frame))
    extra = pd.DataFrame(columns=columns) if pooled is None else pooled.assign(
        galaxy="pooled:" + pooled["population"].astype(str) + ":" + pooled["galaxy"].astype(str),
        model_residual=pooled["model_residual"] if "model_residual" in pooled else np.nan,
        snr_err=statistical_error(pooled))[columns]
    with_residual = residual is not None

    def term(rows: pd.DataFrame):
        rows = pd.concat([rows[columns].assign(galaxy="own:" + rows["galaxy"].astype(str)), extra], ignore_index=True)
        return estimate_shared_error(rows["flux"].astype(float), rows["flux_err"].astype(float),
                                     rows["true_flux"].astype(float), rows["galaxy"], frame=rows["frame"],
                                     residual=rows["model_residual"].astype(float) if with_residual else None,
                                     snr_err=rows["snr_err"].astype(float))

    fitted = term(own)
    half = pd.factorize(frame["galaxy"], sort=True)[0] % 2
    median = own.groupby("galaxy")["model_residual"].transform("median").to_numpy(np.float64)
    rho = np.zeros(len(frame))
    for k in (0, 1):
        table = term(own[half != k])
        mine = half == k
        rho[mine] = table.rho_at(frame["flux"].to_numpy()[mine] / own["snr_err"].to_numpy()[mine],
                                 residual=median[mine] if with_residual else None)
    crossed = frame.assign(shared_rho=rho)
    return {"shared_error": fitted.to_dict(),
            "coadds_shared_error": [_coadds(crossed, "lumos", n, shared=True, outlier_fraction=outlier_fraction)
                                    for n in COADD_N]}


def _pooled_with(rows: pd.DataFrame | None, population: str) -> pd.DataFrame | None:
    """The rows of ``rows`` that ``population``'s shared-error term pools with its own: those of the
    other populations when ``population`` is among them, else None."""
    if rows is None or population not in set(rows["population"]):
        return None
    others = rows[rows["population"] != population]
    return others if len(others) else None


N_BOOT: int = 200
"""Bootstrap draws of the errors of the D width and the PIT KS distance (galaxies resampled whole)."""


def _d_width(frame: pd.DataFrame) -> tuple[float, float]:
    """sigma68 of the pair statistic D (eq. 19) of placements 0 and 1 of each galaxy, with the
    errors before the error floor (the floor is shared, and a difference does not see it), and its
    bootstrap error over the galaxies (one D each; NaN below 10)."""
    from lumos_ops.photometry.error_floor import statistical_error

    frame = frame.assign(flux_err=statistical_error(frame))
    first = frame[frame["place"] == 0].set_index("galaxy")
    second = frame[frame["place"] == 1].set_index("galaxy")
    both = first.join(second, lsuffix="_1", rsuffix="_2", how="inner")
    d = ((both["flux_1"] - both["flux_2"]) / np.sqrt(both["flux_err_1"] ** 2 + both["flux_err_2"] ** 2)).to_numpy()
    d = d[np.isfinite(d)]
    if d.size < 10:
        return half_width68(d), float("nan")
    rng = np.random.default_rng(0)
    return half_width68(d), float(np.std([half_width68(d[i]) for i in rng.integers(0, d.size, (N_BOOT, d.size))]))


DOMAIN_FLAGS: tuple[str, ...] = ("PSF_EXTRAPOLATED", "UNTRAINED_BAND", "CCD_EXTRAPOLATED", "PRIOR_EDGE")
"""Flags that say a LUMOS model measured outside what it was trained on: a report whose rows carry
them scores the model out of its domain."""


def domain_flag_shares(flag: np.ndarray) -> dict[str, float]:
    """Share of rows carrying each of :data:`DOMAIN_FLAGS` (only those set on some row)."""
    from lumos_ops.flags import Flag

    flag = np.asarray(flag, dtype=np.int64)
    shares = {name: float(np.mean((flag & int(Flag[name])) != 0)) if flag.size else 0.0 for name in DOMAIN_FLAGS}
    return {name: share for name, share in shares.items() if share > 0}


def _flux_correction(frame: pd.DataFrame, column: str = "flux_correction") -> dict[str, Any]:
    """The per-exposure flux corrections the rows were measured with (``column``: ``flux_correction``,
    :mod:`lumos_ops.flux_correction`, or ``aperture_correction``, :mod:`lumos_ops.aperture_correction`):
    per frame, the median factor over its injected copies and rows, its 5-95 % range over the rows
    (the factor follows each galaxy's size), and the share of rows whose factor is not 1."""
    factor = frame[column].to_numpy(np.float64)
    groups = list(frame.groupby("frame", sort=True)) if "frame" in frame else []
    frames = {str(name): float(np.median(rows[column].to_numpy(np.float64))) for name, rows in groups}
    ranges = {str(name): np.quantile(rows[column].to_numpy(np.float64), [0.05, 0.95]).tolist()
              for name, rows in groups}
    return {"by_frame": frames, "by_frame_range": ranges,
            "corrected_share": float(np.mean(factor != 1.0)) if factor.size else 0.0}


def _error_floor(frame: pd.DataFrame) -> dict[str, Any]:
    """The error floors the rows were measured with (``applied``, ``neighbour_applied``) and those
    their bright rows ask for: ``asked`` (:func:`~lumos_ops.photometry.error_floor.estimate_error_floor`
    of the errors before the floor, rows whose fitted neighbours' light is under a tenth of their
    flux) and ``neighbour_asked`` (:func:`~lumos_ops.photometry.error_floor.estimate_neighbour_floor`,
    the other rows, at the applied flux floor)."""
    from lumos_ops.photometry.error_floor import (
        NEIGHBOUR_SHARE,
        estimate_error_floor,
        estimate_neighbour_floor,
        statistical_error,
    )

    def largest(column: str) -> float:
        values = frame[column].to_numpy(np.float64) if column in frame else np.zeros(len(frame))
        return float(np.nanmax(values)) if np.isfinite(values).any() else 0.0

    applied = largest("error_floor")
    light = np.nan_to_num(frame["neighbour_light"].to_numpy(np.float64)) if "neighbour_light" in frame else np.zeros(len(frame))
    stat = statistical_error(frame)
    alone = light < NEIGHBOUR_SHARE * np.abs(np.nan_to_num(frame["flux"].to_numpy(np.float64)))
    groups = frame["galaxy"][alone] if "galaxy" in frame else None
    asked = estimate_error_floor(frame["flux"][alone], stat[alone], frame["true_flux"][alone], groups=groups)
    neighbour = estimate_neighbour_floor(frame["flux"], stat, frame["true_flux"], light, floor=applied)
    return {"applied": applied, "asked": asked.to_dict(), "neighbour_applied": largest("neighbour_error_floor"),
            "neighbour_asked": neighbour.to_dict()}


def population_pit(frame: pd.DataFrame) -> dict[str, Any]:
    """The PIT of one population's LUMOS rows made posteriors with the injected population as prior.

    ``frame``: LUMOS rows with ``true_flux``, the mixture columns and ``galaxy`` (a galaxy's
    placements leave each other out of their prior and are resampled whole for ``ks_error``).
    Returns ``ks_distance`` (from uniform), ``ks_error``, the 10-bin ``hist`` and ``n``.
    """
    from lumos_ops.evaluation.population_prior import posterior_pit
    from lumos_ops.lumos.mixture_table import mixtures_from_table
    from lumos_ops.stats import block_resamples

    mix = mixtures_from_table(frame)
    galaxy = frame["galaxy"].to_numpy() if "galaxy" in frame else None
    try:
        values = posterior_pit(frame["true_flux"].to_numpy(), mix.alpha, mix.mu, mix.sigma, truncated=mix.truncated,
                               groups=galaxy)
    except LumosValueError:  # too few galaxies for a population prior
        return {"ks_distance": float("nan"), "ks_error": float("nan"), "hist": [], "n": 0}
    finite = np.isfinite(values)
    groups = galaxy[finite] if galaxy is not None else None
    values = values[finite]
    ks = _ks_uniform(values)
    error = float("nan")
    if values.size >= 10:
        draws = block_resamples(groups, values.size, np.random.default_rng(0), N_BOOT)
        error = float(np.std([_ks_uniform(values[i]) for i in draws]))
    return {"ks_distance": ks, "ks_error": error, "hist": np.histogram(values, bins=10, range=(0, 1))[0].tolist(),
            "n": int(values.size)}


def _ks_uniform(values: np.ndarray) -> float:
    """KS distance of ``values`` (PITs in [0, 1]) from the uniform distribution (NaN when empty)."""
    values = np.sort(values)
    if not values.size:
        return float("nan")
    return float(np.max(np.abs(np.arange(1, values.size + 1) / values.size - values)))


def score_injection(table: pd.DataFrame, *, shared_error_rows: pd.DataFrame | None = None,
                    outlier_fraction: float | None = None) -> dict[str, Any]:
    """The report dict (JSON-ready) of an injection table.

    ``outlier_fraction``: the LUMOS co-adds' prior probability of a bad exposure
    (:func:`lumos_ops.lumos.coadd.coadd_likelihoods`); None: the current survey's
    ``coadd_outlier_fraction``, as the nightly co-adds use it. The report records it.

    ``shared_error_rows``: LUMOS rows (``population``, ``galaxy``, ``frame``, ``flux``,
    ``flux_err``, ``true_flux``, ``model_residual``) of every population the recorded shared-error
    term pools (``lumos adapt``'s ``shared_error_populations``, in its report or not). A population
    among them adds the others' rows to its own estimate of the term, as the recorded term does;
    any other population, and every population when None, gets its own term.
    """
    from lumos_ops.lumos.shared_error import placement_residual

    if outlier_fraction is None:
        from lumos_ops.survey import current_survey

        outlier_fraction = current_survey().coadd_outlier_fraction
    report: dict[str, Any] = {"populations": {}, "coadd_outlier_fraction": float(outlier_fraction)}
    for pop, part in table.groupby("population", sort=False):
        methods: dict[str, Any] = {}
        for method, frame in part.groupby("method", sort=True):
            ok = frame[np.isfinite(frame["flux"]) & np.isfinite(frame["flux_err"])]
            lower = ok["q16"].to_numpy() if method == "lumos" and "q16" in ok else None
            upper = ok["q84"].to_numpy() if method == "lumos" and "q84" in ok else None
            galaxy = ok["galaxy"].to_numpy()  # a galaxy's placements share its error: block bootstrap
            pull = (ok["flux"] - ok["true_flux"]) / ok["flux_err"]
            entry = {
                "n": int(len(ok)),
                "by_true_snr": fixed_truth_bins(ok["true_flux"], ok["flux"], ok["flux_err"], by=ok["true_snr"],
                                                edges=TRUE_SNR_EDGES, lower=lower, upper=upper, groups=galaxy),
                "by_true_flux": fixed_truth_bins(ok["true_flux"], ok["flux"], ok["flux_err"], edges=TRUE_FLUX_EDGES,
                                                 lower=lower, upper=upper, groups=galaxy),
                "coadds": [_coadds(ok, method, n, outlier_fraction=outlier_fraction) for n in COADD_N],
                **dict(zip(("d_width", "d_width_err"), _d_width(ok))),
                "shared_pull": shared_pull_bins(pull, galaxy, ok["true_snr"]),
                "pull_tails": pull_tail_bins(pull, ok["true_snr"]),
            }
            if "model_flux" in ok:
                entry["by_true_snr_model"] = fixed_truth_bins(ok["model_flux"], ok["flux"], ok["flux_err"], by=ok["true_snr"],
                                                              edges=TRUE_SNR_EDGES, lower=lower, upper=upper,
                                                              groups=galaxy)
            if "flux_err_stat" in ok:
                entry["error_floor"] = _error_floor(ok)
            for column in ("flux_correction", "aperture_correction"):
                if column in ok:
                    entry[column] = _flux_correction(ok, column)
            if "flag" in ok:
                entry["domain_flags"] = domain_flag_shares(ok["flag"].to_numpy())
            if method == "lumos":
                entry["pit_population_prior"] = population_pit(ok)
                if "model_flux" in ok:
                    entry["pit_population_prior_model"] = population_pit(ok.assign(true_flux=ok["model_flux"]))
                entry.update(_shared_error(ok, placement_residual(part, ok), _pooled_with(shared_error_rows, pop),
                                           outlier_fraction=outlier_fraction))
            methods[method] = entry
        ratio = []
        if "lumos" in methods and "optimal" in methods:
            for lum, opt in zip(methods["lumos"]["by_true_snr"], methods["optimal"]["by_true_snr"]):
                value = lum["sigma68"] / opt["sigma68"] if opt["sigma68"] and np.isfinite(opt["sigma68"]) else float("nan")
                ratio.append({"lo": lum["lo"], "hi": lum["hi"], "lumos_over_optimal": value})
        report["populations"][pop] = {"methods": methods, "sigma68_ratio_by_true_snr": ratio,
                                      "model_bias_by_true_snr": _model_bias(part),
                                      "faint_pull_by_size": faint_pull_by_size(part),
                                      "n_galaxies": int(part["galaxy"].nunique()),
                                      "frames": sorted(part["frame"].unique().tolist())}
    report["targets"] = targets(report)
    return report


def intraclass_correlation(values: ArrayLike, groups: ArrayLike) -> tuple[float, int]:
    """One-way ANOVA intra-class correlation of ``values`` within ``groups`` of at least 2 members,
    and the number of such groups (NaN with fewer than 2).

    ``rho = b / (b + w)``: ``w`` the mean within-group variance, ``b`` the variance of the group
    means less ``w / n_bar`` (``n_bar`` the mean group size); it can be slightly negative by noise.
    """
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups)
    ok = np.isfinite(v)
    _, label = np.unique(g[ok], return_inverse=True)
    v = v[ok]
    count = np.bincount(label)
    total = np.bincount(label, weights=v)
    square = np.bincount(label, weights=v * v)
    keep = count >= 2
    n_groups = int(keep.sum())
    if n_groups < 2:
        return float("nan"), n_groups
    count, total, square = count[keep], total[keep], square[keep]
    mean = total / count
    within = float(np.mean((square - count * mean**2) / (count - 1)))
    between = float(np.var(mean, ddof=1) - within / count.mean())
    spread = between + within
    return (between / spread if spread > 0 else float("nan")), n_groups


def shared_pull_bins(pull: ArrayLike, galaxy: ArrayLike, true_snr: ArrayLike, *, edges: Sequence[float] = TRUE_SNR_EDGES,
                     n_boot: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """The share of the pull variance that one galaxy's placements have in common, per bin of true SNR.

    Placements of one galaxy are measured in different exposures and positions, so their pulls
    ``(flux - true) / flux_err`` should be independent. What they share (the galaxy's departure
    from its catalogue model, the way its size and profile read the sky's structure, the error
    floor by design) shows as an intra-class correlation ``rho`` (:func:`intraclass_correlation`)
    of the pulls of each galaxy's placements in the bin (galaxies with at least two there). A co-add
    of ``N`` exposures that treats them as independent then has a pull sigma68 about
    ``sqrt(1 + (N - 1) rho)`` times the per-exposure one (``coadd5_factor`` for N = 5). ``rho_err``:
    bootstrap over galaxies (``n_boot`` resamples, ``seed``).
    """
    pull = np.asarray(pull, dtype=np.float64)
    galaxy = np.asarray(galaxy)
    snr = np.asarray(true_snr, dtype=np.float64)
    rng = np.random.default_rng(seed)
    edges = [float(e) for e in edges]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (snr >= lo) & (snr < hi) & np.isfinite(pull)
        rho, n_gal = intraclass_correlation(pull[sel], galaxy[sel])
        err = float("nan")
        if n_gal >= 10:
            ids, inverse = np.unique(galaxy[sel], return_inverse=True)
            members = [np.flatnonzero(inverse == i) for i in range(ids.size)]
            values = pull[sel]
            boot = []
            for _ in range(n_boot):
                pick = rng.integers(0, ids.size, ids.size)
                rows_ = np.concatenate([members[i] for i in pick])
                labels = np.repeat(np.arange(ids.size), [members[i].size for i in pick])
                boot.append(intraclass_correlation(values[rows_], labels)[0])
            err = float(np.nanstd(boot))
        rows.append({"lo": lo, "hi": hi, "n": int(sel.sum()), "n_galaxies": n_gal, "rho": rho, "rho_err": err,
                     "coadd5_factor": float(np.sqrt(1.0 + 4.0 * rho)) if np.isfinite(rho) and rho > -0.25 else float("nan")})
    return rows


def pull_tail_bins(pull: ArrayLike, true_snr: ArrayLike, *, edges: Sequence[float] = TRUE_SNR_EDGES, n_coadd: int = 5,
                   n_draws: int = 20000, seed: int = 0) -> list[dict[str, Any]]:
    """The tails of the pulls ``(flux - true) / flux_err`` per bin of true SNR, and the co-add pull
    they give exposures that share nothing.

    A pull distribution with sigma68 1 can still hold far more than a Gaussian's 0.27 % beyond +-3
    (light of sources no detection found, on real frames). A co-add's errors add variances, so
    those tails widen its core: an excess co-add pull then needs no error shared between exposures
    (:func:`shared_pull_bins` measures that part). Per bin: ``sigma68``, ``std_clipped`` (the
    standard deviation of the pulls clipped at +-10), the shares ``above_3`` and ``below_minus_3``,
    and ``independent_coadd_sigma68``, the sigma68 of ``sqrt(n_coadd)`` times the mean of
    ``n_coadd`` pulls drawn at random from the bin (``n_draws`` draws, ``seed``): the pull an
    ``n_coadd``-exposure co-add with equal errors would have if its exposures were independent draws
    of this distribution. NaN with fewer than 10 pulls in a bin.
    """
    pull = np.asarray(pull, dtype=np.float64)
    snr = np.asarray(true_snr, dtype=np.float64)
    rng = np.random.default_rng(seed)
    edges = [float(e) for e in edges]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        values = pull[(snr >= lo) & (snr < hi) & np.isfinite(pull)]
        row: dict[str, Any] = {"lo": lo, "hi": hi, "n": int(values.size)}
        if values.size < 10:
            row.update({key: float("nan") for key in ("sigma68", "std_clipped", "above_3", "below_minus_3",
                                                      "independent_coadd_sigma68")})
        else:
            draws = values[rng.integers(0, values.size, (n_draws, n_coadd))].mean(axis=1) * np.sqrt(n_coadd)
            row.update({"sigma68": half_width68(values), "std_clipped": float(np.std(np.clip(values, -10.0, 10.0))),
                        "above_3": float(np.mean(values > 3.0)), "below_minus_3": float(np.mean(values < -3.0)),
                        "independent_coadd_sigma68": half_width68(draws)})
        rows.append(row)
    return rows


def faint_pull_by_size(part: pd.DataFrame, *, max_snr: float = 15.0) -> dict[str, Any]:
    """Mean pull ``(f - f0) / err`` of each method's rows at true SNR < ``max_snr`` per quartile of
    the galaxy's size on the frame, the semi-major axis of its aperture (``aperture_a``, px, of the
    placement's aperture row); empty without aperture rows.

    A background that is not the sky under a method's weights moves its faint fluxes by an amount
    that grows with the footprint (docs/likelihood.md §5, "Offsets on real sky").
    """
    if "aperture_a" not in part or not (part["method"] == "aperture").any():
        return {}
    size = part[part["method"] == "aperture"].drop_duplicates("placement").set_index("placement")["aperture_a"]
    faint = part[part["true_snr"] < max_snr]
    a = size.reindex(faint["placement"]).to_numpy(np.float64)
    pull = ((faint["flux"] - faint["true_flux"]) / faint["flux_err"]).to_numpy(np.float64)
    ok = np.isfinite(a) & np.isfinite(pull)
    if ok.sum() < 8:
        return {}
    edges = np.quantile(a[ok], [0.0, 0.25, 0.5, 0.75, 1.0])
    quartile = np.clip(np.searchsorted(edges[1:-1], a, side="right"), 0, 3)
    out: dict[str, Any] = {"max_true_snr": max_snr, "size_edges_px": [float(e) for e in edges], "methods": {}}
    method = faint["method"].to_numpy()
    for name in sorted(set(method[ok])):
        rows = ok & (method == name)
        out["methods"][name] = [float(np.mean(pull[rows & (quartile == q)])) if np.any(rows & (quartile == q))
                                else float("nan") for q in range(4)]
    return out


def _model_bias(part: pd.DataFrame) -> list[dict[str, Any]]:
    """Per bin of true SNR (and ``all``): the median and sigma68 of ``model_flux / true_flux - 1`` over
    the population's placements, the noiseless bias of any estimator weighted by the catalogue
    model (:func:`~lumos_ops.evaluation.injection.noiseless_reading`); empty without ``model_flux``."""
    if "model_flux" not in part:
        return []
    one = part.drop_duplicates("placement")
    ratio = (one["model_flux"] / one["true_flux"]).to_numpy(np.float64) - 1.0
    snr = one["true_snr"].to_numpy(np.float64)
    edges = [float(e) for e in TRUE_SNR_EDGES]
    rows = []
    for lo, hi, sel in [*((a, b, (snr >= a) & (snr < b)) for a, b in zip(edges[:-1], edges[1:])),
                        (None, None, np.ones(snr.size, dtype=bool))]:
        values = ratio[sel & np.isfinite(ratio)]
        rows.append({"lo": lo, "hi": hi, "n": int(values.size),
                     "median": float(np.median(values)) if values.size else float("nan"),
                     "sigma68": half_width68(values)})
    return rows


def _worst(rows: list[dict[str, Any]], key: str, min_lo: float, ideal: float) -> tuple[float, list[float]]:
    vals = [r[key] for r in rows if r["lo"] is not None and r["lo"] >= min_lo and r["n"] >= 10]
    if not vals:
        return float("nan"), []
    return float(max(vals, key=lambda v: abs(v - ideal))), vals


def _worst_error(rows: list[dict[str, Any]], key: str, min_lo: float, worst: float) -> float:
    """The bootstrap error (``{key}_err``, resampled by galaxy) of the bin that gave ``worst``."""
    for r in rows:
        if r["lo"] is not None and r["lo"] >= min_lo and r["n"] >= 10 and r[key] == worst:
            return float(r.get(f"{key}_err", float("nan")))
    return float("nan")


def _target_row(population: str, text: str, value: float, low: float, high: float,
                error: float = float("nan")) -> dict[str, Any]:
    """One target: its value, whether it lies in [low, high], the value's bootstrap ``error`` and
    ``outside_in_errors``, how many of those errors it lies outside the range (0 when met, NaN
    without an error): a miss by 0.5 of them is the bin's noise, one by 3 is not."""
    met = bool(low <= value <= high)
    outside = max(low - value, value - high, 0.0) / error if np.isfinite(error) and error > 0 else float("nan")
    return {"population": population, "target": text, "value": value, "met": met, "error": error,
            "outside_in_errors": 0.0 if met else outside}


def missed_by(row: dict[str, Any]) -> str:
    """`` (missed by N errors)`` for a missed target row whose value carries a bootstrap error, else ''."""
    outside = row.get("outside_in_errors")
    return f" (missed by {outside:.1f} errors)" if not row["met"] and outside is not None and outside == outside else ""


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The likelihood issue's acceptance targets, measured: one row per target and population, with
    the worst bin's bootstrap error where the bins carry one (:func:`_target_row`)."""
    rows = []
    for pop, entry in report["populations"].items():
        methods = entry["methods"]
        if "lumos" not in methods:
            continue
        lum = methods["lumos"]
        model = lum.get("by_true_snr_model")
        for key, min_lo, ideal, low, high, text in (
            ("bias", 5.0, 0.0, -0.03, 0.03, "per exposure, true SNR >= 5: |bias| <= 0.03 (worst bin)"),
            ("pull_sigma68", 5.0, 1.0, 0.9, 1.1, "per exposure, true SNR >= 5: pull sigma68 0.9-1.1 (worst bin)"),
            ("coverage68", 2.0, 0.68, 0.64, 0.72, "per exposure, every true-SNR bin >= 2: coverage68 0.64-0.72 (worst)"),
        ):
            worst, _ = _worst(lum["by_true_snr"], key, min_lo, ideal)
            row = _target_row(pop, text, worst, low, high, _worst_error(lum["by_true_snr"], key, min_lo, worst))
            if model:
                row["value_vs_model_flux"] = _worst(model, key, min_lo, ideal)[0]
            rows.append(row)
        ratios = [r["lumos_over_optimal"] for r, b in zip(entry["sigma68_ratio_by_true_snr"], lum["by_true_snr"])
                  if r["lo"] is not None and r["lo"] >= 2.0 and b["n"] >= 10 and np.isfinite(r["lumos_over_optimal"])]
        limit = 0.8 if pop == "blended" else 1.05
        worst_ratio = max(ratios) if ratios else float("nan")
        rows.append(_target_row(pop, f"sigma68 / optimal's <= {limit} (worst true-SNR bin >= 2)", worst_ratio,
                                -np.inf, limit))
        for kind, label in (("coadds", "5-exposure co-add"),
                            ("coadds_shared_error", "5-exposure co-add with the shared-error term (cross-fitted)")):
            five = next((c for c in lum.get(kind, []) if c["n"] == 5), None)
            if not (five and five["by_true_snr"]):
                continue
            checks = [("pull_sigma68", 1.0, 0.9, 1.1, "pull sigma68 0.9-1.1")]
            if kind == "coadds":
                checks.insert(0, ("bias", 0.0, -0.03, 0.03, "|bias| <= 0.03"))
            for key, ideal, low, high, text in checks:
                worst, _ = _worst(five["by_true_snr"], key, 5.0, ideal)
                row = _target_row(pop, f"{label}, SNR >= 5: {text} (worst bin)", worst, low, high,
                                  _worst_error(five["by_true_snr"], key, 5.0, worst))
                if five.get("by_true_snr_model"):
                    row["value_vs_model_flux"] = _worst(five["by_true_snr_model"], key, 5.0, ideal)[0]
                rows.append(row)
        rows.append(_target_row(pop, "D width 0.9-1.1", lum["d_width"], 0.9, 1.1, lum.get("d_width_err", float("nan"))))
        pit = lum.get("pit_population_prior", {})
        row = _target_row(pop, "posterior with the population prior: PIT KS <= 0.03",
                          pit.get("ks_distance", float("nan")), -np.inf, 0.03, pit.get("ks_error", float("nan")))
        if "pit_population_prior_model" in lum:
            row["value_vs_model_flux"] = lum["pit_population_prior_model"]["ks_distance"]
        rows.append(row)
    return rows


def json_clean(value: Any) -> Any:
    """A nested report with numpy values as Python ones and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _has_positive(ax, axis: str) -> bool:
    """Whether the lines of ``ax`` hold a point with finite x > 0 and finite y (> 0 as well for
    ``axis="y"``): what a log scale on ``axis`` (and on x) can show."""
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        if x.shape != y.shape:
            continue
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
        if np.any(ok & (y > 0)) if axis == "y" else np.any(ok):
            return True
    return False


def plot_injection(report: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """Bias, pull sigma68 and coverage against true SNR per population and method, and co-add pulls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pops = list(report["populations"])
    fig, axes = plt.subplots(len(pops), 4, figsize=(17, 3.6 * len(pops)), squeeze=False)
    for row, pop in zip(axes, pops):
        for method, entry in report["populations"][pop]["methods"].items():
            bins = [b for b in entry["by_true_snr"] if b["lo"] is not None and b["n"] >= 5]
            x = [np.sqrt(b["lo"] * b["hi"]) if b["hi"] < 1000 else 2 * b["lo"] for b in bins]
            row[0].errorbar(x, [b["bias"] for b in bins], yerr=[b["bias_err"] for b in bins], marker="o", label=method)
            row[1].plot(x, [b["pull_sigma68"] for b in bins], marker="o", label=method)
            row[2].plot(x, [b["coverage68"] for b in bins], marker="o", label=method)
            pulls = []
            for c in entry["coadds"]:
                every = [b for b in c["by_true_snr"] if b["lo"] is None]
                pulls.append(every[0]["pull_sigma68"] if every else np.nan)
            row[3].plot([c["n"] for c in entry["coadds"]], pulls, marker="o", label=method)
        log_x = [_has_positive(ax, "x") for ax in row]
        log_y = [k in (1, 3) and _has_positive(ax, "y") for k, ax in enumerate(row)]
        for k, (ax, title, ref) in enumerate(zip(row, ("bias (median rel. error)", "pull sigma68", "68 % coverage",
                                                       "co-add pull sigma68"), (0.0, 1.0, 0.68, 1.0))):
            ax.axhline(ref, color="k", lw=0.8, ls=":")
            ax.set_title(f"{pop}: {title}")
            if log_x[k]:
                ax.set_xscale("log")
            if log_y[k]:
                ax.set_yscale("log")
            ax.set_xlabel("true SNR" if title != "co-add pull sigma68" else "exposures co-added")
        row[0].axhspan(-0.03, 0.03, color="0.9")
        row[0].set_ylim(-0.6, 0.6)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(Path(path))
