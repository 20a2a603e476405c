"""Other detected sources' pixels are left out of a target's model-weighted sums and LUMOS stamp."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from astropy.io import fits

from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import get_method, prepare_targets
from lumos_ops.photometry.frame_sources import other_sources


def test_other_sources_keeps_the_targets_own_detection() -> None:
    mask = np.zeros((3, 21, 21), dtype=bool)
    mask[0, 8:13, 8:13] = True  # the target's own detection
    mask[0, 1:4, 15:19] = True  # another source
    mask[1, 2:5, 2:5] = True  # an undetected target: every detection is another source's
    mask[2, 11:16, 11:16] = True  # reaches the 3 x 3 pixels about the centre: the target's own
    other = other_sources(mask)
    assert not other[0, 8:13, 8:13].any() and other[0, 1:4, 15:19].all()
    np.testing.assert_array_equal(other[1], mask[1])
    assert not other[2].any()
    assert not other_sources(np.zeros((2, 9, 9), dtype=bool)).any()


def test_a_neighbour_touching_only_the_grown_detection_is_another_source() -> None:
    from lumos_ops.photometry.background import DETECT_GROW_PX, grow_octagon

    detected = np.zeros((2, 41, 41), dtype=bool)
    detected[0, 17:24, 17:24] = True  # the target's own detection, 7 x 7 px
    detected[0, 18:23, 31:36] = True  # a star 8 px beyond it: the grown detections merge
    detected[1, 18:23, 26:31] = True  # an undetected target, a star's grown pixels over its position
    mask = np.stack([grow_octagon(plane, DETECT_GROW_PX) for plane in detected])
    assert not other_sources(mask)[0].any()  # one grown group: read as the target's own
    other = other_sources(mask, detected)
    assert other[0, 18:23, 31:36].all()  # the star's detected pixels are left out ...
    assert other[0, 20, 37:41].all()  # ... and its grown pixels beyond the target's octagon
    assert not other[0, 17:24, 17:24].any() and not other[0, 20, 24:29].any()  # the target's own octagon
    assert not other[1, 20, 20] and other[1, 20, 26]  # the undetected target keeps its position


def _median_pull(frame: pd.DataFrame, flux: np.ndarray) -> float:
    """Median of (measured - true) / error over a method's rows."""
    return float(np.median((frame["flux"].to_numpy() - flux) / frame["flux_err"].to_numpy()))


def _scene(path, *, star_flux: float, seed: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """Faint compact galaxies on a 50 px grid, each with an uncatalogued bright star 17-21 px away."""
    rng = np.random.default_rng(seed)
    shape = (420, 420)
    sky, exptime, gain, scale = 6.0, 100.0, 1.0, 0.263
    gx, gy = np.meshgrid(np.arange(60, 361, 50), np.arange(60, 361, 50))
    n = gx.size
    x, y = gx.ravel() + rng.uniform(-2, 2, n), gy.ravel() + rng.uniform(-2, 2, n)
    r50 = rng.uniform(0.8, 1.4, n)  # arcsec: large footprints, which reach the star
    flux = rng.uniform(5.0, 10.0, n)  # e-/s: faint, at most a small detection of their own
    image = np.full(shape, sky)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for xi, yi, ri, fi in zip(x, y, r50, flux):  # exponential discs
        h = ri / scale / 1.678
        disc = np.exp(-np.hypot(xx - xi, yy - yi) / h)
        image += fi * disc / disc.sum()
        angle = rng.uniform(0, 2 * np.pi)
        sx, sy = xi + rng.uniform(17, 21) * np.cos(angle), yi + rng.uniform(17, 21) * np.sin(angle)
        star = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * 1.5**2))
        image += star_flux * star / star.sum()
    counts = rng.poisson(image * exptime) / gain
    header = fits.Header({"EXPTIME": exptime, "FILTER": "NB685", "PSFFWHM": 0.9, "GAIN": gain, "EPOCH": 1})
    fits.PrimaryHDU(counts.astype(np.float32), header).writeto(path)
    catalog = pd.DataFrame({"ref_id": np.arange(n), "x": x, "y": y, "r50": r50, "sersic_n": 1.0, "q": 1.0, "pa": 0.0,
                            "i_auto": 21.0})
    return catalog, flux


def test_a_stars_light_no_longer_enters_a_large_galaxys_weighted_sum(tmp_path) -> None:
    optimal = get_method("optimal")
    pulls = {}
    for star_flux in (0.0, 600.0):
        path = tmp_path / f"stars{star_flux:g}.fits"
        catalog, flux = _scene(path, star_flux=star_flux)
        ctx = prepare_targets(read_exposure(path), catalog, neighbours=False)
        for mask in (True, False):
            frame = optimal.measure(dataclasses.replace(ctx, mask_other_sources=mask))
            pulls[star_flux, mask] = _median_pull(frame, flux)
            if mask:
                assert not np.any(frame["flag"].to_numpy() & 4)  # not flagged MASKED for it
        if star_flux:
            assert ctx.other_source_pixels.any()
    # against the same galaxies without the stars: their wings read as the galaxy's light unless left out
    assert pulls[600.0, False] - pulls[0.0, False] > 0.6
    assert abs(pulls[600.0, True] - pulls[0.0, True]) < 0.3


def _bulge_scene(path, *, star_flux: float, seed: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """de Vaucouleurs galaxies (r50 0.8-1.0 arcsec, SNR about 24) on a 60 px grid, drawn with the
    measurement's own PSF, each with an uncatalogued star 20-24 px away: inside the galaxy's
    99 %-light footprint, detected apart from it, but within twice the detections' growth of it."""
    from lumos_ops.render import render_galaxies, render_point_sources

    rng = np.random.default_rng(seed)
    sky, exptime, size = 6.0, 100.0, 64
    gx, gy = np.meshgrid(np.arange(60, 421, 60), np.arange(60, 421, 60))
    n = gx.size
    x, y = gx.ravel() + rng.uniform(-0.5, 0.5, n), gy.ravel() + rng.uniform(-0.5, 0.5, n)
    r50, flux = rng.uniform(0.8, 1.0, n), rng.uniform(60.0, 100.0, n)
    angle, distance = rng.uniform(0, 2 * np.pi, n), rng.uniform(20.0, 24.0, n)
    sx, sy = x + distance * np.cos(angle), y + distance * np.sin(angle)
    galaxies = render_galaxies(r50=r50, sersic_n=4.0, q=1.0, pa=0.0, psf_fwhm=0.9, dx=x - np.round(x),
                               dy=y - np.round(y), flux=flux, size=size).images
    stars = render_point_sources(psf_fwhm=0.9, dx=sx - np.round(sx), dy=sy - np.round(sy), flux=star_flux,
                                 size=size).images
    image = np.full((480, 480), sky)
    h = size // 2
    for i in range(n):
        for cx, cy, light in ((x[i], y[i], galaxies[i]), (sx[i], sy[i], stars[i])):
            image[round(cy) - h : round(cy) + h, round(cx) - h : round(cx) + h] += light
    header = fits.Header({"EXPTIME": exptime, "FILTER": "NB685", "PSFFWHM": 0.9, "GAIN": 1.0, "EPOCH": 1})
    fits.PrimaryHDU(rng.poisson(image * exptime).astype(np.float32), header).writeto(path)
    catalog = pd.DataFrame({"ref_id": np.arange(n), "x": x, "y": y, "r50": r50, "sersic_n": 4.0, "q": 1.0, "pa": 0.0,
                            "i_auto": 21.0})
    return catalog, flux


def test_a_star_whose_grown_detection_touches_the_targets_stays_out_of_its_sum(tmp_path) -> None:
    """The grown detections of each galaxy and its star merge into one group; grouped that way, the
    star counted as the galaxy's own and its light entered the optimal sum (median pull +1.4)."""
    optimal = get_method("optimal")
    pulls = {}
    for star_flux in (0.0, 600.0):
        path = tmp_path / f"bulges{star_flux:g}.fits"
        catalog, flux = _bulge_scene(path, star_flux=star_flux)
        ctx = prepare_targets(read_exposure(path), catalog, neighbours=False)
        inputs = ctx.photometry_inputs
        grown_groups = dataclasses.replace(ctx)
        grown_groups.__dict__["photometry_inputs"] = dataclasses.replace(inputs, exclude=other_sources(inputs.source_mask))
        for name, context in (("own detection", ctx), ("grown groups", grown_groups)):
            frame = optimal.measure(context)
            pulls[star_flux, name] = _median_pull(frame, flux)
    assert abs(pulls[600.0, "own detection"] - pulls[0.0, "own detection"]) < 0.25
    assert pulls[600.0, "grown groups"] - pulls[0.0, "grown groups"] > 0.6


def test_measure_exposure_and_the_cli_can_keep_other_sources(tmp_path) -> None:
    from lumos_ops.cli import main
    from lumos_ops.measure import measure_exposure

    path = tmp_path / "stars.fits"
    catalog, _ = _scene(path, star_flux=600.0)
    exposure = read_exposure(path)
    assert not prepare_targets(exposure, catalog, mask_other_sources=False).mask_other_sources
    options = {"methods": ("optimal",), "calibrate_errors": False, "neighbours": False}
    masked = measure_exposure(exposure, catalog, **options)
    kept = measure_exposure(exposure, catalog, mask_other_sources=False, **options)
    assert (kept["flux"] - masked["flux"]).median() > 0  # the stars' light, read only when kept
    catalog.to_csv(tmp_path / "cat.csv", index=False)
    for extra, name in (([], "masked.csv"), (["--keep-other-sources"], "kept.csv")):
        assert main(["measure", str(path), str(tmp_path / "cat.csv"), "--method", "optimal",
                     "--no-progress", "--no-neighbours", "--out", str(tmp_path / name), *extra]) == 0
    assert (pd.read_csv(tmp_path / "kept.csv")["flux"] - pd.read_csv(tmp_path / "masked.csv")["flux"]).median() > 0


def _paired(path, catalog: pd.DataFrame, *, offset: float = 5.0, flux: float = 20.0) -> pd.DataFrame:
    """``catalog`` with a catalogued neighbour ``offset`` px to the right of every galaxy (ref_id +
    1000): a disc of the galaxy's shape and ``flux`` e-/s added to the image at ``path`` as
    :func:`_scene` draws its galaxies; the galaxies first."""
    pairs = catalog.assign(ref_id=catalog["ref_id"] + 1000, x=catalog["x"] + offset, i_auto=20.0)
    with fits.open(path, mode="update") as hdul:
        data = hdul[0].data.astype(np.float64)
        yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
        exptime = float(hdul[0].header["EXPTIME"])
        for px, py, r50 in zip(pairs["x"], pairs["y"], pairs["r50"]):
            disc = np.exp(-np.hypot(xx - px, yy - py) / (r50 / 0.263 / 1.678))
            data += flux * exptime * disc / disc.sum()
        hdul[0].data = data.astype(np.float32)
    return pd.concat([catalog, pairs], ignore_index=True)


def test_targets_fitted_with_their_neighbours_leave_only_the_other_sources_out(tmp_path) -> None:
    """A catalogued pair 5 px apart is fitted jointly: its stamps are cut from the image less the
    neighbour's fitted light, so the pair's detected pixels are not left out again; the
    uncatalogued star 17-21 px away is another source, left out as for an isolated target."""
    path = tmp_path / "stars.fits"
    catalog, _ = _scene(path, star_flux=600.0)
    n = len(catalog)
    catalog = _paired(path, catalog, flux=100.0)
    ctx = prepare_targets(read_exposure(path), catalog)
    assert ctx.neighbours.fitted.all()
    c = ctx.stamps.size // 2
    pair = (slice(None), slice(c - 2, c + 3), slice(c - 2, c + 8))
    from lumos_ops.cutouts import cut_mask
    from lumos_ops.photometry.frame_sources import frame_sources

    detected = cut_mask(frame_sources(ctx.exposure.data).detected, ctx.stamps.x0, ctx.stamps.y0, ctx.stamps.size)
    assert detected[:n][pair].any(axis=(1, 2)).mean() > 0.9  # the pairs are detected
    other = ctx.other_source_pixels
    assert other[:n].any(axis=(1, 2)).mean() > 0.75 and not other[:n][pair].any()  # the stars, not the pairs
    exclude = ctx.photometry_inputs.exclude
    w = exclude.shape[1] // 2
    assert exclude[:n].any(axis=(1, 2)).mean() > 0.75 and not exclude[:n, w - 2 : w + 3, w - 2 : w + 8].any()


def test_a_stars_light_stays_out_of_the_joint_fit(tmp_path) -> None:
    """An uncatalogued star 17-21 px from a fitted pair would raise the neighbour's amplitude, and
    the neighbour's fitted light taken from the target's stamp would take some of the target's
    with it: the fit leaves the star's detection and wings out, as every method does."""
    shift = {}
    for star_flux in (0.0, 600.0):
        path = tmp_path / f"stars{star_flux:g}.fits"
        catalog, _ = _scene(path, star_flux=star_flux)
        n = len(catalog)
        catalog = _paired(path, catalog)
        exposure = read_exposure(path)
        for mask in (True, False):
            fit = prepare_targets(exposure, catalog, mask_other_sources=mask).neighbours
            assert fit.fitted.all()
            shift[star_flux, mask] = float(np.median(fit.amplitude[n:]))
    assert shift[600.0, False] - shift[0.0, False] > 2.0  # e-/s of the star's light, left in
    assert abs(shift[600.0, True] - shift[0.0, True]) < 0.5, shift
