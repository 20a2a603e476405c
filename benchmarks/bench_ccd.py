"""One PAUS CCD (4096 x 2048 px, 2,500 catalogue targets) measured with the four methods: CPU time per step.

Run as ``.venv/bin/python benchmarks/bench_ccd.py [--n 2500] [--repeat 3] [--no-lumos] [--no-sep] [--no-neighbours]
[--flux-correction] [--no-aperture-correction]``.

The machine is shared, so every figure is **CPU time** of this process (``time.process_time``) on
one thread (``OMP/MKL/OPENBLAS_NUM_THREADS=1``, ``torch.set_num_threads(1)``), the minimum over
``--repeat`` runs of the whole job. The job is exactly ``lumos_ops.measure.measure_exposure`` with
``methods=("aperture", "optimal", "modelfit", "lumos")`` and the blank-sky error calibration on;
its steps are timed by wrapping the functions it calls (exclusive times, nested calls subtracted):

* ``read``: ``read_exposure`` of the FITS file (outside ``measure_exposure``);
* ``stamps``: ``prepare_targets``'s work on the located catalogue, without the rendering (60 px
  cutouts, flags; ``measure._prepare_located``, which ``measure_exposure`` calls directly);
* ``render``: the unit-flux PSF-convolved Sersic model of every target (``render_target_models``);
* ``wide stamps``: the 94 px cutouts and padded models of the classical methods (``photometry_inputs``);
* ``background``: the 30-45 px annulus background (``annulus_background``);
* ``detection``: the frame's sources, detected once (``frame_sources.detect_frame_sources``), which
  the backgrounds leave out;
* ``wing light``: the frame's profile of other sources' light beyond their detections and its map
  in every cutout (``photometry.wing_light``: ``wing_light``, ``wing_map``), subtracted before any method runs;
* ``neighbours``: the joint fit of the targets whose models overlap and the cleaned cutouts
  (``photometry.neighbours``: ``fit_neighbours``, ``NeighbourFit.clean``);
* ``aperture``, ``optimal``, ``modelfit``, ``lumos``: each method's ``measure``;
* ``calibration``: ``calibrate_noise`` (blank-sky positions, their stamps, models and every method);
* ``flux correction`` (``--flux-correction`` only): ``measure_flux_corrections``, the star PSF
  stack and 150 GalSim galaxies measured by every method (docs/likelihood.md §14). The CCD then
  also holds ``--stars`` bright stars (i = 17-19), catalogued as unresolved targets (``r50``
  0.02 arcsec), as a catalogue that lists its field's stars has them;
* ``aperture correction``: the reference apertures (98 % of the model light) of the targets that may calibrate
  (``lumos_ops.aperture_correction.chunk_reference``, on by default; docs/likelihood.md §16), and the
  matched filter when no ``optimal`` method has computed it; ``aperture fit``: the fit of the factors
  (``fit_aperture_corrections``);
* ``apply errors``: ``apply_error_scale`` of every method and chunk;
* ``other``: the rest of ``measure_exposure`` (routing, concatenating the long table).

The LUMOS network's one-off costs (reading the checkpoint, building the TorchScript graph) are
paid by a warm-up call before the timed runs and shown apart.

With ``sep`` installed the same aperture job is also timed with it, on the same image, positions
and ellipses: ``sep.sum_ellipse`` (exact overlap, ``subpix=0``) on the apertures our method chose,
plus ``sep.sum_circann`` (30-45 px, exact) for a plain annulus mean background (targets whose annulus
lies on the image). Ours is compared
both as the whole method (radius solve, sums, flags) and as the same sums alone.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lumos_ops.aperture_correction as aperture_correction_module  # noqa: E402
import lumos_ops.flux_correction as flux_correction_module  # noqa: E402
import lumos_ops.measure as measure_module  # noqa: E402
import lumos_ops.noise_calibration as calibration_module  # noqa: E402
import lumos_ops.photometry.frame_sources as frame_sources_module  # noqa: E402
import lumos_ops.photometry.inputs as inputs_module  # noqa: E402
import lumos_ops.photometry.neighbours as neighbours_module  # noqa: E402
import lumos_ops.photometry.wing_light as wing_module  # noqa: E402
from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure  # noqa: E402
from lumos_ops.constants import ANNULUS_RADII, CCD_SHAPE  # noqa: E402
from lumos_ops.io.exposure import read_exposure  # noqa: E402

METHODS = ("aperture", "optimal", "modelfit", "lumos")
STEPS = ("read", "stamps", "render", "detection", "wing light", "neighbours", "wide stamps", "background", *METHODS, "calibration",
         "flux correction", "aperture correction", "aperture fit", "apply errors", "other")
TARGET_S = 3.0


class StepTimer:
    """Exclusive CPU time per named step; a step marked ``absorb`` keeps the time of everything it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._stack: list[list[Any]] = []  # [name, child seconds, absorb]

    def wrap(self, name: str, fn: Callable[..., Any], *, absorb: bool = False) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if any(frame[2] for frame in self._stack):
                return fn(*args, **kwargs)
            self._stack.append([name, 0.0, absorb])
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                _, children, _ = self._stack.pop()
                self.seconds[name] += spent - children
                if self._stack:
                    self._stack[-1][1] += spent

        return timed


class _TimedMethod:
    """A method instance whose ``measure`` is timed (everything else delegated)."""

    def __init__(self, method: Any, timer: StepTimer) -> None:
        self._method = method
        self.name = method.name
        self.measure = timer.wrap(method.name, method.measure)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._method, item)


@contextlib.contextmanager
def instrumented(timer: StepTimer, instances: dict[str, Any]) -> Iterator[None]:
    """Wrap the functions ``measure_exposure`` calls; ``get_method`` hands out the prepared instances."""
    context_cls = measure_module.TargetContext
    prop = context_cls.__dict__["photometry_inputs"]
    timed_prop = functools.cached_property(timer.wrap("wide stamps", prop.func))
    timed_prop.__set_name__(context_cls, "photometry_inputs")
    patches = [
        (measure_module, "_prepare_located", timer.wrap("stamps", measure_module._prepare_located)),
        (measure_module, "render_target_models", timer.wrap("render", measure_module.render_target_models)),
        (measure_module, "get_method", lambda name, **_: _TimedMethod(instances[name], timer)),
        (inputs_module, "annulus_background", timer.wrap("background", inputs_module.annulus_background)),
        (frame_sources_module, "detect_frame_sources",
         timer.wrap("detection", frame_sources_module.detect_frame_sources)),
        (wing_module, "measure_wing_profile", timer.wrap("wing light", wing_module.measure_wing_profile)),
        (wing_module, "wing_light", timer.wrap("wing light", wing_module.wing_light)),
        (wing_module, "wing_map", timer.wrap("wing light", wing_module.wing_map)),
        (neighbours_module, "fit_neighbours", timer.wrap("neighbours", neighbours_module.fit_neighbours)),
        (neighbours_module.NeighbourFit, "clean", timer.wrap("neighbours", neighbours_module.NeighbourFit.clean)),
        (calibration_module, "calibrate_noise", timer.wrap("calibration", calibration_module.calibrate_noise, absorb=True)),
        (calibration_module, "apply_error_scale", timer.wrap("apply errors", calibration_module.apply_error_scale)),
        (flux_correction_module, "measure_flux_corrections",
         timer.wrap("flux correction", flux_correction_module.measure_flux_corrections, absorb=True)),
        (aperture_correction_module, "chunk_reference",
         timer.wrap("aperture correction", aperture_correction_module.chunk_reference)),
        (aperture_correction_module, "fit_aperture_corrections",
         timer.wrap("aperture fit", aperture_correction_module.fit_aperture_corrections, absorb=True)),
        (context_cls, "photometry_inputs", timed_prop),
    ]
    saved = [(obj, attr, obj.__dict__[attr] if isinstance(obj, type) else getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, value in patches:
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def with_stars(catalog: Any, n: int, *, shape: tuple[int, int], seed: int) -> Any:
    """``catalog`` plus ``n`` bright stars (i = 17-19 AB mag) at random positions, catalogued as
    unresolved targets (``r50`` 0.02 arcsec, round), which the flux correction's PSF stack may use."""
    import pandas as pd

    rng = np.random.default_rng([seed, 7])
    stars = pd.DataFrame({"ref_id": np.arange(n) + int(catalog["ref_id"].max()) + 1,
                          "x": rng.uniform(50, shape[1] - 50, n), "y": rng.uniform(50, shape[0] - 50, n),
                          "r50": 0.02, "sersic_n": 1.0, "q": 1.0, "pa": 0.0, "i_auto": rng.uniform(17.0, 19.0, n)})
    return pd.concat([catalog, stars[[c for c in catalog.columns if c in stars.columns]]], ignore_index=True)


def run_job(path: str, catalog: Any, methods: tuple[str, ...], instances: dict[str, Any],
            neighbours: bool = True, flux_correction: bool = False,
            aperture_correction: bool = True) -> tuple[dict[str, float], Any]:
    """One timed ``read_exposure`` + ``measure_exposure``; CPU seconds per step and the result table."""
    timer = StepTimer()
    start = time.process_time()
    exposure = read_exposure(path)
    timer.seconds["read"] = time.process_time() - start
    with instrumented(timer, instances):
        start = time.process_time()
        table = measure_module.measure_exposure(exposure, catalog, methods=list(methods), neighbours=neighbours,
                                                flux_correction=flux_correction,
                                                aperture_correction=aperture_correction)
        job = time.process_time() - start
    seconds = dict(timer.seconds)
    seconds["other"] = job - sum(v for k, v in seconds.items() if k != "read")
    seconds["total"] = job + seconds["read"]
    return seconds, table


def sep_job(exposure: Any, x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray,
            pa_deg: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """sep's exact elliptical sums and 30-45 px circular annulus means: (CPU s sums, CPU s annulus, sums, means)."""
    import sep

    data = np.ascontiguousarray(exposure.data, dtype=np.float32)
    start = time.process_time()
    flux, _, _ = sep.sum_ellipse(data, x, y, a, b, np.deg2rad((pa_deg + 90.0) % 180.0 - 90.0), r=1.0, subpix=0)
    sums_s = time.process_time() - start
    start = time.process_time()
    ann_sum, _, _ = sep.sum_circann(data, x, y, ANNULUS_RADII[0], ANNULUS_RADII[1], subpix=0)
    background = ann_sum / (np.pi * (ANNULUS_RADII[1] ** 2 - ANNULUS_RADII[0] ** 2))  # annuli inside the image
    return sums_s, time.process_time() - start, flux, background


def ours_sums(exposure: Any, x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray,
              pa_deg: np.ndarray) -> tuple[float, np.ndarray]:
    """CPU seconds of our exact elliptical sums on the same apertures (``ellipse_sums``), and the sums."""
    from lumos_ops.photometry.aperture import ellipse_sums

    start = time.process_time()
    sums, _ = ellipse_sums(exposure.data, x, y, a, b, pa_deg)
    return time.process_time() - start, sums


def sep_comparison(path: str, catalog: Any, table: Any, best: dict[str, float], repeat: int) -> None:
    """Print our aperture and background steps next to sep on the same apertures (interior targets)."""
    import sep

    exposure = read_exposure(path)
    ap = table[table["method"] == "aperture"].reset_index(drop=True)
    ok = np.isfinite(ap["aperture_a"].to_numpy()) & np.isfinite(ap["flux"].to_numpy())
    reach = ANNULUS_RADII[1] + 1.0  # whole annulus on the image: its area is pi (r_out^2 - r_in^2)
    ny, nx = exposure.shape
    xs, ys = ap["x"].to_numpy(), ap["y"].to_numpy()
    ok &= (xs > reach) & (xs < nx - 1 - reach) & (ys > reach) & (ys < ny - 1 - reach)
    x, y = xs[ok], ys[ok]
    a, b = ap["aperture_a"].to_numpy()[ok], ap["aperture_b"].to_numpy()[ok]
    pa = catalog["pa"].to_numpy()[ok]
    sep_runs = [sep_job(exposure, x, y, a, b, pa) for _ in range(repeat)]
    sep_sums_s, sep_ann_s = min(r[0] for r in sep_runs), min(r[1] for r in sep_runs)
    ours_runs = [ours_sums(exposure, x, y, a, b, pa) for _ in range(repeat)]
    ours_s = min(r[0] for r in ours_runs)
    n = int(ok.sum())
    scale = n / len(ap)  # our method steps ran on every target: compare per target
    sep_total = (sep_sums_s + sep_ann_s) / scale
    ours_total = best["aperture"] + best["background"] + best["wide stamps"]
    print(f"\nsep {sep.__version__}, same image and apertures, exact overlap (subpix=0); CPU s per {len(ap)} targets")
    print(f"  sep  sum_ellipse                               {sep_sums_s / scale:7.3f}")
    print(f"  ours ellipse_sums (cutouts + exact overlap)     {ours_s / scale:7.3f}   {ours_s / sep_sums_s:5.2f}x sep")
    print(f"  sep  sum_circann 30-45 px, plain mean           {sep_ann_s / scale:7.3f}")
    print(f"  ours background (source-masked clipped mean)    {best['background']:7.3f}   "
          f"{best['background'] / (sep_ann_s / scale):5.2f}x sep")
    print(f"  sep  sums + annulus                             {sep_total:7.3f}")
    print(f"  ours aperture + background + wide stamps        {ours_total:7.3f}   {ours_total / sep_total:5.2f}x sep"
          "   (aperture includes the 62.5 % radius solve and flags)")
    rel = np.abs(ours_runs[0][1] - sep_runs[0][2]) / np.maximum(np.abs(sep_runs[0][2]), 1.0)
    print(f"  same sums: max |ours - sep| / max(|sep|, 1 e-/s) = {np.max(rel):.1e}; background median "
          f"ours - sep plain mean = {np.median(ap['background'].to_numpy()[ok] - sep_runs[0][3]):+.4f} e-/s/px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2500, help="catalogue targets on the CCD (default 2500)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the minimum per step is shown (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-lumos", action="store_true", help="leave LUMOS out (classical methods only)")
    parser.add_argument("--no-sep", action="store_true", help="skip the sep comparison")
    parser.add_argument("--no-neighbours", action="store_true",
                        help="measure without the joint fit of catalogued neighbours (docs/neighbours.md)")
    parser.add_argument("--flux-correction", action="store_true",
                        help="measure with the per-exposure PSF flux correction (docs/likelihood.md §14)")
    parser.add_argument("--no-aperture-correction", action="store_true",
                        help="measure without the aperture correction from the targets (on by default; "
                             "docs/likelihood.md §16)")
    parser.add_argument("--stars", type=int, default=60,
                        help="bright stars added to the CCD and its catalogue with --flux-correction (default 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lumos_ops").setLevel(logging.ERROR)  # the CCD is larger than LUMOS's training CCD
    methods = tuple(m for m in METHODS if not (args.no_lumos and m == "lumos"))
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; CPU time of one thread "
          f"(torch threads {torch.get_num_threads()}, OMP/MKL/OPENBLAS 1); min of {args.repeat} runs")
    shape = CCD_SHAPE
    catalog = random_catalog(args.n, shape=shape, margin=0.0, seed=args.seed)
    if args.flux_correction:
        catalog = with_stars(catalog, args.stars, shape=shape, seed=args.seed)
    flux = 10 ** (-0.4 * (catalog["i_auto"].to_numpy() - 25.0))
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic_exposure(catalog, flux, shape=shape, seed=args.seed + 1).write(os.path.join(tmp, "ccd.fits"))
        instances = {m: measure_module.get_method(m) for m in methods}
        # one-off costs: checkpoint, TorchScript graph (and the renderer's tables)
        start = time.process_time()
        small = measure_module.prepare_targets(read_exposure(path), catalog.iloc[:64])
        for method in instances.values():
            method.measure(small)
        warm_up = time.process_time() - start
        runs = []
        for _ in range(args.repeat):
            seconds, table = run_job(path, catalog, methods, instances, neighbours=not args.no_neighbours,
                                     flux_correction=args.flux_correction,
                                     aperture_correction=not args.no_aperture_correction)
            runs.append(seconds)
        best = {step: min(r.get(step, 0.0) for r in runs) for step in (*STEPS, "total")}
        n_on = int((table["method"] == methods[0]).sum())
        stars = f" + {args.stars} catalogued stars, flux correction on" if args.flux_correction else ""
        print(f"\nCCD {shape[0]} x {shape[1]} px, {args.n} targets{stars} ({n_on} rows per method), methods: "
              f"{', '.join(methods)}")
        print(f"{'step':<14} {'CPU s':>8} {'targets/s':>10}")
        print("-" * 34)
        for step in STEPS:
            if step in METHODS and step not in methods:
                continue
            value = best[step]
            rate = f"{args.n / value:>10.0f}" if value > 1e-3 else f"{'-':>10}"
            print(f"{step:<14} {value:>8.2f} {rate}")
        print("-" * 34)
        print(f"{'total':<14} {best['total']:>8.2f} {args.n / best['total']:>10.0f}   (target <= {TARGET_S:.1f} s)")
        print(f"{'warm-up':<14} {warm_up:>8.2f}   once per process (checkpoint, TorchScript graph), not in the total")
        print("per-run totals:", ", ".join(f"{r['total']:.2f}" for r in runs))
        if not args.no_sep:
            try:
                import sep  # noqa: F401
            except ImportError:
                print("\nsep is not installed: no comparison")
                return
            sep_comparison(path, catalog, table, best, args.repeat)

if __name__ == "__main__":
    main()
